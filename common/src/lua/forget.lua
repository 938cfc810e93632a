-- Deletes a terminal job's record and its index entries.
-- Returns {'deleted'}, {'conflict', status}, {'unannounced', {field, value, ...}} or {'missing'}.
-- KEYS[1] job key, KEYS[2] group index, KEYS[3] the job's tombstone, KEYS[4] its events
-- ARGV: 1 id, 2 tombstone ttl (s)
-- The tombstone outlives the record so that a copy of the job's message still waiting in
-- a queue is dropped instead of running the ended job again. Its value is the last status
-- and who ended the job ('<status> <ended_by>'), so that the attempt that ended it, retrying
-- its complete after a lost reply, learns it did (attempt.lua) and publishes its result.
local current = redis.call('HMGET', KEYS[1], 'status', 'idempotency_key', 'ended_by')
local status = current[1]
if not status then
  return {'missing'}
end
if status ~= 'finished' and status ~= 'failed' and status ~= 'canceled' then
  return {'conflict', status}
end
if redis.call('HGET', KEYS[1], 'announce') == '1' then
  -- The master ended it and its result is not published yet: deleting now would leave
  -- every copy of the job to meet a tombstone, and no result would ever be published.
  return {'unannounced', redis.call('HGETALL', KEYS[1])}
end
redis.call('DEL', KEYS[1], KEYS[4])
redis.call('SET', KEYS[3], status .. ' ' .. (current[3] or ''), 'EX', tonumber(ARGV[2]))
redis.call('ZREM', KEYS[2], ARGV[1])
if current[2] then
  redis.call('DEL', current[2])
end
return {'deleted'}
