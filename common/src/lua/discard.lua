-- Discards the record of a submit the master answered with an error (503), if it is still
-- that request's own: queued, never claimed, with the submit time the request chose, and
-- never answered as `existing` to another caller (submit.lua marks those `repeated`).
-- Anything else stays: the run-record corrector publishes a queued record whose message
-- is missing, so a kept record still leads to an outcome.
-- KEYS[1] job key, KEYS[2] group index, KEYS[3] group queued set, KEYS[4] idempotency key
-- (or '' when none)
-- ARGV: 1 id, 2 submitted_at (ms) the request chose
-- Returns 1 when the record was discarded, 0 when it stays (or is gone).
local fields = redis.call('HMGET', KEYS[1], 'status', 'attempts', 'submitted_at', 'repeated')
if fields[1] ~= 'queued' or tonumber(fields[2]) ~= 0 or fields[3] ~= ARGV[2] or fields[4] then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if KEYS[4] ~= '' and redis.call('GET', KEYS[4]) == ARGV[1] then
  redis.call('DEL', KEYS[4])
end
return 1
