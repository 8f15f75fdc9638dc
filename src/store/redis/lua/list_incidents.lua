-- Newest first, from one index, read in one snapshot. KEYS: 1 index. ARGV: 1 last rank, 2 the
-- incident key prefix ({tag}:inc:).
local out = {}
for _, id in ipairs(redis.call('ZREVRANGE', KEYS[1], 0, ARGV[1])) do
  local data = redis.call('HGET', ARGV[2] .. id, 'data')
  if data then table.insert(out, data) end
end
return out
