-- Deletes a terminal job's record and its index entries.
-- Returns {'deleted'}, {'conflict', status} or {'missing'}.
-- KEYS[1] job key, KEYS[2] group index
-- ARGV: 1 id
local current = redis.call('HMGET', KEYS[1], 'status', 'idempotency_key')
local status = current[1]
if not status then
  return {'missing'}
end
if status ~= 'finished' and status ~= 'failed' and status ~= 'canceled' then
  return {'conflict', status}
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if current[2] then
  redis.call('DEL', current[2])
end
return {'deleted'}
