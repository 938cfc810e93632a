-- Claims a delivered job for a worker: queued -> started, creates the record of a job
-- published by a foreign client, takes over a redelivered job whose owner is gone, and
-- fails a job of a broken group. Returns one of:
--   {'run', attempts, submitted_at}   run it
--   {'drop', status}                  a duplicate: ack and drop
--   {'hold'}                          another live worker owns it: park the copy
--   {'ended', {field, value, ...}}    terminal: publish its result (again), then ack
--   {'missing'}                       no record and no args given: call again with args
-- KEYS[1] job key, KEYS[2] group key
-- ARGV: 1 id, 2 group, 3 function, 4 args (JSON, or '' when not sent), 5 submitted_at (ms or ''), 6 worker id,
--       7 now (ms), 8 copy: '0' a fresh delivery, '1' a redelivery, '2' a parked copy,
--       9 worker key prefix,
--       10 retention (s)
local key = KEYS[1]
local worker = ARGV[6]
local now = ARGV[7]
local status = redis.call('HGET', key, 'status')

local function fail_broken()
  redis.call('HSET', key, 'status', 'failed', 'error_kind', 'group_broken',
    'error_message', 'group ' .. ARGV[2] .. ' is broken; reset it to run jobs again',
    'finished_at', now, 'worker', worker)
  redis.call('EXPIRE', key, tonumber(ARGV[10]))
  return {'ended', redis.call('HGETALL', key)}
end

if not status then
  if ARGV[4] == '' then
    return {'missing'}
  end
  redis.call('HSET', key, 'id', ARGV[1], 'group', ARGV[2], 'function', ARGV[3], 'args', ARGV[4],
    'attempts', 0)
  if ARGV[5] ~= '' then
    redis.call('HSET', key, 'submitted_at', ARGV[5])
  end
  status = 'queued'
end

if status == 'queued' then
  if redis.call('HGET', KEYS[2], 'broken') == '1' then
    return fail_broken()
  end
  local attempts = redis.call('HINCRBY', key, 'attempts', 1)
  redis.call('HSET', key, 'status', 'started', 'worker', worker, 'started_at', now)
  return {'run', attempts, redis.call('HGET', key, 'submitted_at') or ''}
end

if status == 'started' then
  if ARGV[8] == '0' then
    return {'drop', status}
  end
  local owner = redis.call('HGET', key, 'worker')
  if owner and owner ~= worker and redis.call('EXISTS', ARGV[9] .. owner) == 1 then
    return {'hold'}
  end
  local attempts = redis.call('HINCRBY', key, 'attempts', 1)
  redis.call('HSET', key, 'worker', worker, 'started_at', now)
  return {'run', attempts, redis.call('HGET', key, 'submitted_at') or ''}
end

-- Terminal. A redelivery may follow a crash between recording and publishing: publish
-- again. A parked copy does so only when the owner is gone; a live owner publishes itself.
if ARGV[8] == '1' then
  return {'ended', redis.call('HGETALL', key)}
end
if ARGV[8] == '2' then
  local owner = redis.call('HGET', key, 'worker')
  if not owner or redis.call('EXISTS', ARGV[9] .. owner) == 0 then
    return {'ended', redis.call('HGETALL', key)}
  end
end
return {'drop', status}
