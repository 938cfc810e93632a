-- Records an undecodable job as failed with bad_message, if it has no record yet or is
-- still queued. Returns 1 if recorded (or recorded so before: a retried call, or a copy
-- met after a crash, publishes the result again), else 0.
-- KEYS[1] job key, KEYS[2] group index, KEYS[3] group queued set
-- ARGV: 1 id, 2 reason, 3 now (ms), 4 retention (s), 5 group, 6 function (or '')
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'failed' and redis.call('HGET', KEYS[1], 'error_kind') == 'bad_message' then
  return 1
end
if status and status ~= 'queued' then
  return 0
end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'status', 'failed', 'error_kind', 'bad_message',
  'error_message', ARGV[2], 'finished_at', ARGV[3])
if not status then
  redis.call('HSET', KEYS[1], 'attempts', 0, 'group', ARGV[5], 'function', ARGV[6], 'args', 'null',
    'submitted_at', ARGV[3])
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
else
  redis.call('ZREM', KEYS[3], ARGV[1])
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
return 1
