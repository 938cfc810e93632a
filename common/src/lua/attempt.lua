-- Shared by the scripts that end a started attempt (complete.lua, retry.lua): transitions.rs
-- prepends it to each. KEYS[1] is the job key, KEYS[2] the group key, KEYS[3] the group's
-- running set and KEYS[4] the job's tombstone; ARGV[1] (worker id) and ARGV[2] (attempt)
-- are the fencing token: a stale owner cannot add a second outcome.

-- Checks that the caller owns the started attempt. Returns nil, the record's
-- {status, worker, attempts, group, id, mark} and the token 'worker:attempt'; or else the
-- reply to give at once: {'ok'} when `mark` holds the token already (and the status is
-- `done_status`, when given), for a call retried after its reply was lost; {'announce',
-- {field, value, ...}} for a job the master ended whose result is not confirmed published;
-- {'stale', status} otherwise. A record deleted after this attempt ended it (its tombstone
-- names the attempt, see forget.lua) answers {'ok'} too: the attempt's reply was lost, and
-- its result is still owed to the result topic. No record and no tombstone at all answers
-- {'lost'}: a failover to a replica that never had the record (a started record has no
-- expiry, and only a delete removes one, leaving a tombstone).
local function fence(mark, done_status)
  local attempt = ARGV[1] .. ':' .. ARGV[2]
  local current = redis.call('HMGET', KEYS[1], 'status', 'worker', 'attempts', 'group', 'id', mark)
  if current[6] == attempt and (done_status == nil or current[1] == done_status) then
    return {'ok'}
  end
  if not current[1] and mark == 'ended_by' then
    local gone = redis.call('GET', KEYS[4])
    if gone and string.sub(gone, -(#attempt + 1)) == ' ' .. attempt then
      return {'ok'}
    end
  end
  if not current[1] and redis.call('EXISTS', KEYS[4]) == 0 then
    return {'lost'}
  end
  if current[1] ~= 'started' or current[2] ~= ARGV[1] or current[3] ~= ARGV[2] then
    if redis.call('HGET', KEYS[1], 'announce') == '1' then
      return {'announce', redis.call('HGETALL', KEYS[1])}
    end
    return {'stale', current[1] or ''}
  end
  return nil, current, attempt
end

-- Applies the group's failure policy: 'reset' clears its count of consecutive failures,
-- 'count' adds one and breaks the group at `max`, 'none' changes nothing.
local function failure_policy(effect, max)
  if effect == 'reset' then
    if redis.call('HGET', KEYS[2], 'failures') ~= '0' then
      redis.call('HSET', KEYS[2], 'failures', 0)
    end
  elseif effect == 'count' then
    local failures = redis.call('HINCRBY', KEYS[2], 'failures', 1)
    if failures >= tonumber(max) then
      redis.call('HSET', KEYS[2], 'broken', 1)
    end
  end
end

