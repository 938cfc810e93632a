-- Claims a delivered job for a worker: queued -> started, creates the record of a job
-- published by a foreign client, takes over a redelivered job whose owner is gone, and
-- fails a job of a broken group. Returns one of:
--   {'run', attempts, submitted_at}   run it
--   {'drop', status}                  a duplicate: ack and drop
--   {'hold'}                          another live worker owns it: park the copy
--   {'ended', {field, value, ...}}    terminal: publish its result (again), then ack
--   {'missing'}                       no record and no args given: call again with args
--   {'gone'}                          deleted after it ended: ack and drop, never run
--   {'expired'}                       no record, submitted longer than the retention
--                                     ago: it may have ended and expired; never run it
--   {'waiting', reason}               flow control holds it back (reason 'paused',
--                                     'max_running' or 'rate_limit'): it stays queued,
--                                     in the held or delayed set; acknowledge the message
-- KEYS[1] job key, KEYS[2] group index, KEYS[3] group queued set, KEYS[4] the job's
-- tombstone (set when its record was deleted), KEYS[5] group key, KEYS[6] group running set
-- ARGV: 1 id, 2 group, 3 function, 4 args (JSON, or '' when not sent), 5 submitted_at (ms
--       or ''), 6 worker id, 7 now (ms), 8 copy: '0' a fresh delivery, '1' a redelivery,
--       '2' a parked copy, 9 the group's liveness key prefix (+ worker id = a worker's
--       liveness key for this group; the one key name built here, as the owner is read
--       from the record), 10 retention (s), 11 claim token (unique per delivery, so that a
--       claim retried after a lost reply gets the same answer), 12 takeovers allowed
--       before the job fails with crashed, 13 the group's max failures
-- Flow control (SPEC §9) of a job about to start: KEYS[7] the group's run-time limits,
-- KEYS[8] its held set, KEYS[9] the prefix of its rate-limit keys, KEYS[10] its delayed
-- set; ARGV 14 max_running, 15 rate_limit ('N/s', 'N/m', 'N/h') and 16 limit_key of the
-- config file ('' for none), which the run-time limits override ('none' lifts one);
-- ARGV 17 the message's priority ('' for none), kept in a record the claim creates
local key = KEYS[1]
local id = ARGV[1]
local group = ARGV[2]
local worker = ARGV[6]
local now = ARGV[7]
local alive = ARGV[9]
local running = KEYS[6]
local status = redis.call('HGET', key, 'status')

local function ended()
  return {'ended', redis.call('HGETALL', key)}
end

local function fail(kind, message)
  redis.call('HSET', key, 'status', 'failed', 'error_kind', kind, 'error_message', message,
    'finished_at', now, 'worker', worker, 'claim', ARGV[11])
  redis.call('HDEL', key, 'announce')
  redis.call('SREM', running, id)
  redis.call('EXPIRE', key, tonumber(ARGV[10]))
  return ended()
end

local function start()
  local attempts = redis.call('HINCRBY', key, 'attempts', 1)
  redis.call('HSET', key, 'status', 'started', 'worker', worker, 'started_at', now, 'claim', ARGV[11])
  redis.call('HDEL', key, 'handoff', 'published')
  redis.call('SADD', running, id)
  return {'run', attempts, redis.call('HGET', key, 'submitted_at') or ''}
end

-- The limit in force: the admins' override, else the config file's; nil for none.
local function limit(field, configured)
  local set = redis.call('HGET', KEYS[7], field)
  if set == 'none' then
    return nil
  end
  if set then
    return set
  end
  if configured ~= '' then
    return configured
  end
  return nil
end

-- Holds the job back until the leader releases it (resumed, or a slot free); the queued
-- set scores it an hour ahead, so the corrector leaves it to the leader meanwhile.
local function hold(reason)
  redis.call('ZADD', KEYS[8], now, id)
  redis.call('ZADD', KEYS[3], tonumber(now) + 3600000, id)
  redis.call('HDEL', key, 'rate_slot')
  return {'waiting', reason}
end

-- The value of the job's limit_key field: its own rate-limit bucket ('' without one).
local function bucket()
  local field = limit('limit_key', ARGV[16])
  if not field then
    return ''
  end
  local ok, args = pcall(cjson.decode, redis.call('HGET', key, 'args') or 'null')
  if not ok or type(args) ~= 'table' then
    return ''
  end
  local value = args[field]
  local kind = type(value)
  if kind ~= 'string' and kind ~= 'number' and kind ~= 'boolean' then
    return ''
  end
  value = tostring(value)
  if #value > 64 then
    value = redis.sha1hex(value)
  end
  return value
end

-- A start slot under the rate limit, spread evenly (GCRA): nil to start now, else the
-- job waits in the delayed set for the slot reserved for it (each waiting job holds one,
-- so a backlog is paced without being rechecked).
local function rate_gate()
  local rate = limit('rate_limit', ARGV[15])
  if not rate then
    return nil
  end
  local count, unit = string.match(rate, '^(%d+)/([smh])$')
  if not count or tonumber(count) < 1 then
    return nil
  end
  -- Redis's own clock, in µs: the claims of every worker are timed by one clock, in the
  -- order they run, however the workers' clocks and round trips differ.
  local time = redis.call('TIME')
  local now_us = tonumber(time[1]) * 1000000 + tonumber(time[2])
  local reserved = tonumber(redis.call('HGET', key, 'rate_slot') or '')
  if reserved and reserved <= now_us + 1000000 then
    redis.call('HDEL', key, 'rate_slot')
    return nil
  end
  local slot = reserved
  if not slot then
    local interval = math.floor(({s = 1000, m = 60000, h = 3600000})[unit] * 1000 / tonumber(count))
    local state = KEYS[9] .. bucket()
    local next_free = math.max(tonumber(redis.call('GET', state) or '0'), now_us)
    redis.call('SET', state, string.format('%d', next_free + interval), 'PX',
      math.floor((next_free + interval - now_us) / 1000) + 1000)
    -- A start up to one interval (at most 20 ms) before its slot goes at once: the average
    -- rate holds (the next slot still moves one interval on) and a fast burst of claims
    -- does not wait a leader tick for slots microseconds ahead.
    if next_free <= now_us + math.min(interval, 20000) then
      return nil
    end
    slot = next_free
    redis.call('HSET', key, 'rate_slot', string.format('%d', slot))
  end
  local due = math.floor(slot / 1000)
  redis.call('ZADD', KEYS[10], due, id)
  redis.call('ZADD', KEYS[3], due, id)
  return {'waiting', 'rate_limit'}
end

-- Whether flow control lets a queued job start now; else what the claim answers.
local function flow_control()
  if redis.call('HGET', KEYS[7], 'paused') == '1' then
    return hold('paused')
  end
  local cap = tonumber(limit('max_running', ARGV[14]) or '')
  if cap and redis.call('SCARD', running) >= cap then
    return hold('max_running')
  end
  return rate_gate()
end

if not status then
  if redis.call('EXISTS', KEYS[4]) == 1 then
    return {'gone'}
  end
  local submitted = ARGV[5]
  if submitted == '' then
    submitted = now
  elseif tonumber(submitted) < tonumber(now) - 1000 * tonumber(ARGV[10]) then
    return {'expired'}
  end
  if ARGV[4] == '' then
    return {'missing'}
  end
  redis.call('HSET', key, 'id', id, 'group', group, 'function', ARGV[3], 'args', ARGV[4],
    'status', 'queued', 'attempts', 0, 'submitted_at', submitted)
  if ARGV[17] ~= '' then
    redis.call('HSET', key, 'priority', ARGV[17])
  end
  redis.call('ZADD', KEYS[2], submitted, id)
  status = 'queued'
end

if status == 'queued' then
  redis.call('ZREM', KEYS[3], id)
  if redis.call('HGET', KEYS[5], 'broken') == '1' then
    return fail('group_broken', 'group ' .. group .. ' is broken; reset it to run jobs again')
  end
  local waiting = flow_control()
  if waiting then
    return waiting
  end
  return start()
end

if status == 'started' then
  if redis.call('HGET', key, 'claim') == ARGV[11] then
    -- This very claim, retried after its reply was lost.
    return {'run', redis.call('HGET', key, 'attempts'), redis.call('HGET', key, 'submitted_at') or ''}
  end
  if ARGV[8] == '0' then
    return {'drop', status}
  end
  local owner = redis.call('HGET', key, 'worker')
  if owner and owner ~= worker and redis.call('EXISTS', alive .. owner) == 1 then
    return {'hold'}
  end
  -- A takeover: the owner died with the job started. A job that kills its worker (an
  -- OOM kill) would loop forever, so takeovers are counted and limited.
  if redis.call('HINCRBY', key, 'takeovers', 1) > tonumber(ARGV[12]) then
    local failures = redis.call('HINCRBY', KEYS[5], 'failures', 1)
    if failures >= tonumber(ARGV[13]) then
      redis.call('HSET', KEYS[5], 'broken', 1)
    end
    return fail('crashed', 'its worker died while running it ' .. (tonumber(ARGV[12]) + 1) ..
      ' times (an OOM kill or a crash of the worker)')
  end
  return start()
end

-- Terminal. A redelivery may follow a crash between recording and publishing: publish
-- again; so does any copy of a job whose result its ender (the master) has not confirmed.
-- A parked copy publishes only when the owner is gone; a live owner publishes itself.
if ARGV[8] == '1' or redis.call('HGET', key, 'announce') == '1' or redis.call('HGET', key, 'claim') == ARGV[11] then
  return ended()
end
if ARGV[8] == '2' then
  local owner = redis.call('HGET', key, 'worker')
  if not owner or redis.call('EXISTS', alive .. owner) == 0 then
    return ended()
  end
  -- The owner lives and publishes the result itself. But if the attempt that ended the job
  -- had handed its delivery off, this parked copy is the job's only copy: until the owner
  -- says the result is published, keep it (the owner may have crashed in between).
  local marks = redis.call('HMGET', key, 'handoff', 'ended_by', 'published')
  if marks[1] and marks[1] == marks[2] and marks[3] ~= '1' then
    return {'hold'}
  end
end
return {'drop', status}
