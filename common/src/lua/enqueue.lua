-- Records a published job as queued unless a record exists (a worker may have claimed it
-- already, or the id is a duplicate).
-- KEYS[1] job key
-- ARGV: id, group, function, args (JSON), submitted_at (ms or '')
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'group', ARGV[2], 'function', ARGV[3], 'args', ARGV[4],
  'status', 'queued', 'attempts', 0)
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[1], 'submitted_at', ARGV[5])
end
return 1
