-- The leader's release of a group's held jobs (claim.lua holds them while the group is
-- paused or at max_running): oldest first, as many as the cap has room for, each put in
-- the delayed set due now so the promotion that follows publishes it. An entry whose job
-- is no longer queued (canceled, deleted, started through another copy) just leaves.
-- Returns how many jobs were released.
-- KEYS[1] held set, KEYS[2] the group's run-time limits, KEYS[3] running set, KEYS[4]
-- delayed set, KEYS[5] queued set, KEYS[6] the prefix of the group's job keys
-- ARGV: 1 now (ms), 2 the config file's max_running ('' for none), 3 most to release
if redis.call('HGET', KEYS[2], 'paused') == '1' then
  return 0
end
local room = tonumber(ARGV[3])
local cap = redis.call('HGET', KEYS[2], 'max_running')
if not cap and ARGV[2] ~= '' then
  cap = ARGV[2]
end
if cap and cap ~= 'none' then
  room = math.min(room, tonumber(cap) - redis.call('SCARD', KEYS[3]))
end
if room <= 0 then
  return 0
end
local released = 0
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, room - 1)) do
  redis.call('ZREM', KEYS[1], id)
  if redis.call('HGET', KEYS[6] .. id, 'status') == 'queued' then
    redis.call('ZADD', KEYS[4], ARGV[1], id)
    redis.call('ZADD', KEYS[5], ARGV[1], id)
    released = released + 1
  end
end
return released
