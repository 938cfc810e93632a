-- Records that a step of a workflow or batch ended, once: a repeat (a redelivered result,
-- the reconcile) changes nothing. Each dependent waits for one step fewer, and learns that
-- a dependency did not finish. Answers, every time, which dependents wait for nothing and
-- are not released yet, so that a caller that died before releasing them is made good by
-- the repeat; and the flow's state, which turns terminal when its last step ended.
-- Returns {'missing'} or {state, name1, failed1, name2, failed2, ...} (failed: '1' when a
-- dependency failed or was canceled).
-- KEYS[1] flow key
-- ARGV: 1 step, 2 its status, 3 now (ms), 4 retention (s), 5.. the step's dependents
local key = KEYS[1]
if redis.call('EXISTS', key) == 0 then
  return {'missing'}
end
local step, status = ARGV[1], ARGV[2]
local before = redis.call('HGET', key, 's:' .. step)
if before ~= 'finished' and before ~= 'failed' and before ~= 'canceled' then
  redis.call('HSET', key, 's:' .. step, status)
  redis.call('HINCRBY', key, 'left', -1)
  redis.call('HINCRBY', key, 'n:' .. status, 1)
  for i = 5, #ARGV do
    redis.call('HINCRBY', key, 'p:' .. ARGV[i], -1)
    if status ~= 'finished' then
      redis.call('HSET', key, 'x:' .. ARGV[i], '1')
    end
  end
end
local state = redis.call('HGET', key, 'state')
if state == 'running' and tonumber(redis.call('HGET', key, 'left')) <= 0 then
  local failed = tonumber(redis.call('HGET', key, 'n:failed') or '0')
    + tonumber(redis.call('HGET', key, 'n:canceled') or '0')
  if redis.call('HGET', key, 'canceled') == '1' then
    state = 'canceled'
  elseif failed > 0 then
    state = 'failed'
  else
    state = 'finished'
  end
  redis.call('HSET', key, 'state', state, 'ended_at', ARGV[3])
  redis.call('EXPIRE', key, tonumber(ARGV[4]))
end
local reply = {state}
for i = 5, #ARGV do
  local waits = tonumber(redis.call('HGET', key, 'p:' .. ARGV[i]) or '0')
  if waits <= 0 and redis.call('HEXISTS', key, 's:' .. ARGV[i]) == 0 then
    table.insert(reply, ARGV[i])
    table.insert(reply, redis.call('HGET', key, 'x:' .. ARGV[i]) or '0')
  end
end
return reply
