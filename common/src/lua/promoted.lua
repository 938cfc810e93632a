-- Removes the delayed-set entries of jobs the leader published, each only while it still
-- has the score that was read (a job deleted and submitted again with the same id and
-- another run_at keeps its new entry). Returns how many were removed.
-- KEYS[1] group delayed set
-- ARGV: id, score pairs
local removed = 0
for i = 1, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[i + 1]) then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return removed
