-- Records a job that ends without running (a workflow step whose dependency failed, or
-- that a cancel of its workflow reached before it was released): created terminal, its
-- result owed by the master like an early end's. A job of that id that exists, or existed
-- and was deleted, is left alone. Returns {'ended', 'queued', {field, value, ...}} or
-- {'conflict', status}.
-- KEYS[1] job key, KEYS[2] group index, KEYS[3] group owed set, KEYS[4] the id's tombstone
-- ARGV: 1 id, 2 group, 3 function, 4 args (JSON), 5 now (ms), 6 status, 7 error kind,
--       8 error message, 9 retention (s), 10.. more fields as name, value pairs
local status = redis.call('HGET', KEYS[1], 'status')
if status then
  return {'conflict', status}
end
if redis.call('EXISTS', KEYS[4]) == 1 then
  return {'conflict', redis.call('GET', KEYS[4])}
end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'group', ARGV[2], 'function', ARGV[3],
  'args', ARGV[4], 'status', ARGV[6], 'attempts', 0, 'submitted_at', ARGV[5],
  'finished_at', ARGV[5], 'error_kind', ARGV[7], 'error_message', ARGV[8], 'announce', 1,
  'ended_by', 'master')
for i = 10, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[9]))
return {'ended', 'queued', redis.call('HGETALL', KEYS[1])}
