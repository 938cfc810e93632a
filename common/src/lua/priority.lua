-- Keeps the priority of a job a producer published in its existing record, so the copies
-- published from the record (a delayed job when due, the corrector's) keep it. A record
-- that is gone (deleted) stays gone. Returns 1 when set.
-- KEYS[1] job key; ARGV[1] priority
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], 'priority', ARGV[1])
return 1
