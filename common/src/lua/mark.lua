-- Sets a mark on a job's record, only while the record exists (a mark must never create
-- a record): 'handoff' (the attempt `<worker>:<attempt>` that parked its delivery, so a
-- parked copy is its only copy) or 'published' (its result is confirmed published).
-- Returns 1 if set.
-- KEYS[1] job key
-- ARGV: 1 field, 2 value
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
