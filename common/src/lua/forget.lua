-- Deletes a terminal job's record and its index entries.
-- Returns {'deleted'}, {'conflict', status} or {'missing'}.
-- KEYS[1] job key, KEYS[2] group index, KEYS[3] the job's tombstone
-- ARGV: 1 id, 2 tombstone ttl (s)
-- The tombstone outlives the record so that a copy of the job's message still waiting in
-- a queue is dropped instead of running the ended job again.
local current = redis.call('HMGET', KEYS[1], 'status', 'idempotency_key')
local status = current[1]
if not status then
  return {'missing'}
end
if status ~= 'finished' and status ~= 'failed' and status ~= 'canceled' then
  return {'conflict', status}
end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[3], status, 'EX', tonumber(ARGV[2]))
redis.call('ZREM', KEYS[2], ARGV[1])
if current[2] then
  redis.call('DEL', current[2])
end
return {'deleted'}
