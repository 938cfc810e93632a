-- Appends a running attempt's log lines and progress reports (SPEC §10) to the job's event
-- stream (bounded, expiring with the record) and keeps the latest progress in the record.
-- Only while that attempt owns the job: a late line of an ended, deleted or taken-over
-- attempt is dropped, and no record is ever created here.
-- KEYS[1] job key, KEYS[2] the job's event stream
-- ARGV: 1 retention (s), 2 most entries kept, 3 attempt, then 4 per entry:
--       kind ('log' | 'progress'), at (ms), text (the line, or the progress message), percent
-- Returns how many entries were appended.
local state = redis.call('HMGET', KEYS[1], 'status', 'attempts')
if state[1] ~= 'started' or state[2] ~= ARGV[3] then
  return 0
end
local appended = 0
local progress, message
for i = 4, #ARGV, 4 do
  local kind, at, text, percent = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if kind == 'log' then
    redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], '*', 'k', 'log', 'at', at, 'n', ARGV[3], 'line', text)
  else
    redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], '*', 'k', 'progress', 'at', at, 'n', ARGV[3],
      'p', percent, 'm', text)
    progress, message = percent, text
  end
  appended = appended + 1
end
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[1]))
if progress then
  redis.call('HSET', KEYS[1], 'progress', progress, 'progress_message', message)
end
return appended
