-- Hands a started job back: started -> queued, for the worker and attempt that own it
-- (a draining worker that could not finish it in time). Returns 1 if handed back.
-- KEYS[1] job key, KEYS[2] group running set, KEYS[3] group queued set
-- ARGV: 1 worker id, 2 attempt, 3 now (ms)
local current = redis.call('HMGET', KEYS[1], 'status', 'worker', 'attempts', 'group', 'id')
if current[1] ~= 'started' or current[2] ~= ARGV[1] or current[3] ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], 'status', 'queued')
redis.call('HDEL', KEYS[1], 'worker')
redis.call('SREM', KEYS[2], current[5])
redis.call('ZADD', KEYS[3], ARGV[3], current[5])
return 1
