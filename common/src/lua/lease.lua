-- Takes or renews a lease: succeeds when the lease is free or already ours.
-- KEYS[1] lease key
-- ARGV: 1 holder id, 2 ttl (ms)
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
  return 1
end
return 0
