-- Ends a job that is not running to completion, for the master: a cancel
-- (queued|started -> canceled) or a queue timeout (queued -> failed with no_worker).
-- The record is marked 'announce' until the master has published its result, so that a
-- worker meeting the job's message publishes it if the master could not.
-- Returns {'ended', previous status, {field, value, ...}}, {'conflict', status} or {'missing'}.
-- KEYS[1] job key, KEYS[2] group queued set, KEYS[3] group running set, KEYS[4] group owed
-- set (results the master owes, by the time the job ended: the corrector publishes those
-- still owed past its bound), KEYS[5] group delayed set (a canceled delayed job never runs)
-- ARGV: 1 new status, 2 error kind, 3 error message, 4 now (ms), 5 retention (s),
--       6 allowed previous statuses (comma list)
local key = KEYS[1]
local current = redis.call('HMGET', key, 'status', 'group', 'id')
local status = current[1]
if not status then
  return {'missing'}
end
if not string.find(',' .. ARGV[6] .. ',', ',' .. status .. ',', 1, true) then
  return {'conflict', status}
end
redis.call('HSET', key, 'status', ARGV[1], 'error_kind', ARGV[2], 'error_message', ARGV[3],
  'finished_at', ARGV[4], 'announce', 1, 'ended_by', 'master')
redis.call('EXPIRE', key, tonumber(ARGV[5]))
redis.call('ZREM', KEYS[2], current[3])
redis.call('SREM', KEYS[3], current[3])
redis.call('ZREM', KEYS[5], current[3])
redis.call('ZADD', KEYS[4], ARGV[4], current[3])
return {'ended', status, redis.call('HGETALL', key)}
