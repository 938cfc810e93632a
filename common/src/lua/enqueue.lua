-- Records a published job as queued unless a record exists (a worker may have claimed it
-- already, or the id is a duplicate), and indexes it. A delayed job also enters the
-- group's delayed set, from which the leader publishes it again when due (its message,
-- when a worker meets it early, is deferred to the same set).
-- KEYS[1] job key, KEYS[2] group index, KEYS[3] group queued set, KEYS[4] the id's
-- tombstone (a new job with a deleted job's id clears it), KEYS[5] group delayed set
-- ARGV: 1 id, 2 group, 3 function, 4 args (JSON), 5 submitted_at (ms), 6 run_at (ms, or ''
--       for an immediate job)
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'group', ARGV[2], 'function', ARGV[3], 'args', ARGV[4],
  'status', 'queued', 'attempts', 0, 'submitted_at', ARGV[5])
redis.call('DEL', KEYS[4])
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[1], 'run_at', ARGV[6])
  redis.call('ZADD', KEYS[5], ARGV[6], ARGV[1])
  redis.call('ZADD', KEYS[3], ARGV[6], ARGV[1])
else
  redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1])
end
return 1
