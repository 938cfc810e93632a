-- Records a job's outcome: started -> finished | failed | canceled, only for the worker
-- and attempt that own it (fence() of attempt.lua), sets the record's retention, and
-- applies the group's failure policy.
-- Returns {'ok'}, {'stale', status}, {'announce', {field, value, ...}} when the job was
-- ended by the master (a cancel) whose result is not confirmed published: publish it, or
-- {'lost'} when a failover lost its record (see fence()).
-- KEYS[1] job key, KEYS[2] group key, KEYS[3] group running set, KEYS[4] the job's tombstone
-- ARGV: 1 worker id, 2 attempt, 3 status, 4 result (JSON or ''), 5 error kind (or ''),
--       6 error message, 7 now (ms), 8 duration (ms), 9 retention (s),
--       10 failure effect ('reset' | 'count' | 'none'), 11 max failures
local reply, current, attempt = fence('ended_by')
if reply then
  return reply
end
local key = KEYS[1]
redis.call('HSET', key, 'status', ARGV[3], 'finished_at', ARGV[7], 'duration_ms', ARGV[8], 'ended_by', attempt)
if ARGV[4] ~= '' then
  redis.call('HSET', key, 'result', ARGV[4])
end
if ARGV[5] ~= '' then
  redis.call('HSET', key, 'error_kind', ARGV[5], 'error_message', ARGV[6])
else
  redis.call('HDEL', key, 'error_kind', 'error_message')
end
redis.call('EXPIRE', key, tonumber(ARGV[9]))
redis.call('SREM', KEYS[3], current[5])
failure_policy(ARGV[10], ARGV[11])
return {'ok'}
