-- Marks steps of a workflow or batch as released (their job is recorded), unless they
-- ended already. A flow that is gone (expired) is left gone. Returns 1, or 0 when gone.
-- KEYS[1] flow key
-- ARGV: the steps
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
for i = 1, #ARGV do
  redis.call('HSETNX', KEYS[1], 's:' .. ARGV[i], 'released')
end
return 1
