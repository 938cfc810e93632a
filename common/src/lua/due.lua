-- The leader's read of a group's delayed jobs that are due: up to ARGV[2] entries scored
-- at most ARGV[1], each as {id, score, {field, value, ...}} with its queued record. An
-- entry whose job is no longer queued (canceled, started through another copy, deleted)
-- leaves the set here. Nothing else changes: the caller publishes the jobs, then removes
-- their entries (promoted.lua), so a leader that dies in between leaves them for the next
-- one (a job published twice still runs once: the claim drops the second copy).
-- KEYS[1] group delayed set, KEYS[2] the prefix of the group's job keys (+ id = the
-- record; the key name completed here, in the same hash slot)
-- ARGV: 1 now (ms), 2 limit
local entries = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0,
  tonumber(ARGV[2]))
local due = {}
for i = 1, #entries, 2 do
  local id, score = entries[i], entries[i + 1]
  local key = KEYS[2] .. id
  if redis.call('HGET', key, 'status') == 'queued' then
    due[#due + 1] = {id, score, redis.call('HGETALL', key)}
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return due
