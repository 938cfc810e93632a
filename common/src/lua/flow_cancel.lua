-- Cancels a running workflow or batch: no step is released to run from now on (the
-- caller ends the jobs that have not ended). Returns the state it had, or 'missing'.
-- KEYS[1] flow key
local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  return 'missing'
end
if state == 'running' then
  redis.call('HSET', KEYS[1], 'canceled', '1')
end
return state
