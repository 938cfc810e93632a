-- Sends a failed job back for a retry: started -> queued, only for the worker and attempt
-- that own it (fence() of attempt.lua). Keeps the error as the last one, schedules the job
-- in the queued set at the time it becomes available, and applies the group's failure policy.
-- Returns {'ok'}, {'stale', status}, {'announce', {field, value, ...}} or {'lost'} like
-- complete.lua.
-- KEYS[1] job key, KEYS[2] group key, KEYS[3] group running set, KEYS[4] the job's
-- tombstone, KEYS[5] group queued set
-- ARGV: 1 worker id, 2 attempt, 3 error kind, 4 error message, 5 available at (ms),
--       6 failure effect ('count' | 'none'), 7 max failures
local reply, current, attempt = fence('retried_by', 'queued')
if reply then
  return reply
end
local key = KEYS[1]
redis.call('HSET', key, 'status', 'queued', 'error_kind', ARGV[3], 'error_message', ARGV[4],
  'retry_at', ARGV[5], 'retried_by', attempt)
redis.call('HDEL', key, 'worker')
redis.call('SREM', KEYS[3], current[5])
redis.call('ZADD', KEYS[5], ARGV[5], current[5])
failure_policy(ARGV[6], ARGV[7])
return {'ok'}
