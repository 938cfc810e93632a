-- The master's submit: creates a queued record (and the idempotency key) unless the id or
-- the idempotency key already names a job, or the group is broken (a repeat still gets
-- its original job). Returns {'created'}, {'existing', id} or {'broken'}.
-- KEYS[1] job key, KEYS[2] group index, KEYS[3] group queued set, KEYS[4] the id's
-- tombstone (a new job with a deleted job's id clears it), KEYS[5] group key,
-- KEYS[6] idempotency key (or '' when none), KEYS[7] the prefix of the group's job keys
-- (the record an idempotency key names is completed in Lua; same hash slot)
-- A record answered as `existing` to another request (another submit time) is marked
-- `repeated`: that caller now relies on it, so the discard of a refused submit
-- (discard.lua) must leave it. The same request retrying after a lost reply does not mark.
-- KEYS[8] the group's delayed set
-- ARGV: 1 id, 2 group, 3 function, 4 args (JSON), 5 submitted_at (ms), 6 timeout_ms (or ''),
--       7 idempotency key ttl (s), 8 run_at (ms, or '' for none), 9 '1' when the job is
--       delayed (run_at in the future: it waits in the delayed set, unpublished, and is
--       queued from run_at on), 10.. more fields of the record as name, value pairs
--       (retry_of, traceparent, schedule)
local function answer_existing(record)
  if redis.call('HGET', record, 'submitted_at') ~= ARGV[5] then
    redis.call('HSET', record, 'repeated', '1')
  end
end
if KEYS[6] ~= '' then
  local existing = redis.call('GET', KEYS[6])
  if existing then
    local record = KEYS[7] .. existing
    if redis.call('EXISTS', record) == 1 then
      answer_existing(record)
    end
    return {'existing', existing}
  end
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  answer_existing(KEYS[1])
  return {'existing', ARGV[1]}
end
if redis.call('HGET', KEYS[5], 'broken') == '1' then
  return {'broken'}
end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'group', ARGV[2], 'function', ARGV[3], 'args', ARGV[4],
  'status', 'queued', 'attempts', 0, 'submitted_at', ARGV[5])
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[1], 'timeout_ms', ARGV[6])
end
if KEYS[6] ~= '' then
  redis.call('SET', KEYS[6], ARGV[1], 'EX', tonumber(ARGV[7]))
  redis.call('HSET', KEYS[1], 'idempotency_key', KEYS[6])
end
for i = 10, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('DEL', KEYS[4])
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
local available = ARGV[5]
if ARGV[8] ~= '' then
  redis.call('HSET', KEYS[1], 'run_at', ARGV[8])
  if ARGV[9] == '1' then
    available = ARGV[8]
    redis.call('ZADD', KEYS[8], ARGV[8], ARGV[1])
  end
end
redis.call('ZADD', KEYS[3], available, ARGV[1])
return {'created'}
