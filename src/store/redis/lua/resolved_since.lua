-- Resolved incidents by resolve time, the latest first: their JSON.
-- KEYS: 1 resolvedat. ARGV: 1 since ms, 2 limit, 3 {tag}:inc:.
local out = {}
for _, id in ipairs(redis.call('ZREVRANGEBYSCORE', KEYS[1], '+inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))) do
  local data = redis.call('HGET', ARGV[3] .. id, 'data')
  if data then table.insert(out, data) end
end
return out
