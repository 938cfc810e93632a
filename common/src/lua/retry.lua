-- Sends a failed job back for a retry: started -> queued, only for the worker and attempt
-- that own it. Keeps the error as the last one, schedules the job in the queued set at the
-- time it becomes available, and applies the group's failure policy.
-- Returns {'ok'}, {'stale', status}, or {'announce', {field, value, ...}} like complete.lua.
-- KEYS[1] job key, KEYS[2] group key, KEYS[3] group running set, KEYS[4] group queued set
-- ARGV: 1 worker id, 2 attempt, 3 error kind, 4 error message, 5 available at (ms),
--       6 failure effect ('count' | 'none'), 7 max failures
local key = KEYS[1]
local attempt = ARGV[1] .. ':' .. ARGV[2]
local current = redis.call('HMGET', key, 'status', 'worker', 'attempts', 'group', 'id', 'retried_by')
if current[1] == 'queued' and current[6] == attempt then
  -- Recorded already: this call is a retry after its reply was lost.
  return {'ok'}
end
if current[1] ~= 'started' or current[2] ~= ARGV[1] or current[3] ~= ARGV[2] then
  if redis.call('HGET', key, 'announce') == '1' then
    return {'announce', redis.call('HGETALL', key)}
  end
  return {'stale', current[1] or ''}
end
redis.call('HSET', key, 'status', 'queued', 'error_kind', ARGV[3], 'error_message', ARGV[4],
  'retry_at', ARGV[5], 'retried_by', attempt)
redis.call('HDEL', key, 'worker')
redis.call('SREM', KEYS[3], current[5])
redis.call('ZADD', KEYS[4], ARGV[5], current[5])
if ARGV[6] == 'count' then
  local failures = redis.call('HINCRBY', KEYS[2], 'failures', 1)
  if failures >= tonumber(ARGV[7]) then
    redis.call('HSET', KEYS[2], 'broken', 1)
  end
end
return {'ok'}
