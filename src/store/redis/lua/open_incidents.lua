-- Every open incident's JSON, through the open-fingerprint index. KEYS: 1 open. ARGV: 1 the
-- incident key prefix.
local out = {}
for _, id in ipairs(redis.call('HVALS', KEYS[1])) do
  local data = redis.call('HGET', ARGV[1] .. id, 'data')
  if data then table.insert(out, data) end
end
return out
