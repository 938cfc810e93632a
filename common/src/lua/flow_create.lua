-- Creates a workflow's or batch's state unless it exists. Returns 'created' or 'existing'.
-- KEYS[1] flow key
-- ARGV: 1 definition (JSON, opaque here), 2 now (ms), 3 number of steps,
--       4.. name, count pairs: the steps with dependencies and how many they wait for
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 'existing'
end
redis.call('HSET', KEYS[1], 'def', ARGV[1], 'created_at', ARGV[2], 'state', 'running',
  'left', ARGV[3])
for i = 4, #ARGV, 2 do
  redis.call('HSET', KEYS[1], 'p:' .. ARGV[i], ARGV[i + 1])
end
return 'created'
