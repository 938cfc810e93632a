-- A worker met the message of a delayed job before its run_at: the job waits in the
-- group's delayed set (the leader publishes it again when due) and the message is
-- acknowledged, so a long delay never holds a delivery or blocks the queue behind it.
-- Returns {'delayed'}, or {'claim'} when the job is not (or no longer) queued — started,
-- ended, deleted, or too old to have a record — and the claim decides as for any copy.
-- KEYS[1] job key, KEYS[2] group index, KEYS[3] group queued set, KEYS[4] the id's
-- tombstone, KEYS[5] group delayed set
-- ARGV: 1 id, 2 group, 3 function, 4 args (JSON), 5 submitted_at (ms or ''), 6 run_at (ms),
--       7 now (ms), 8 retention (s), 9 priority (or ''; kept for the copy published when due)
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  if redis.call('EXISTS', KEYS[4]) == 1 then
    return {'claim'}
  end
  local submitted = ARGV[5]
  if submitted == '' then
    submitted = ARGV[7]
  elseif tonumber(submitted) < tonumber(ARGV[7]) - 1000 * tonumber(ARGV[8]) then
    return {'claim'}
  end
  redis.call('HSET', KEYS[1], 'id', ARGV[1], 'group', ARGV[2], 'function', ARGV[3], 'args', ARGV[4],
    'status', 'queued', 'attempts', 0, 'submitted_at', submitted)
  redis.call('DEL', KEYS[4])
  redis.call('ZADD', KEYS[2], submitted, ARGV[1])
  status = 'queued'
end
if status ~= 'queued' then
  return {'claim'}
end
redis.call('HSET', KEYS[1], 'run_at', ARGV[6])
if ARGV[9] ~= '' then
  redis.call('HSET', KEYS[1], 'priority', ARGV[9])
end
redis.call('ZADD', KEYS[5], ARGV[6], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[6], ARGV[1])
return {'delayed'}
