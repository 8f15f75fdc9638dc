-- One bounded prune pass. Returns {{id, fingerprint, …}, number of delivery ids forgotten}.
--
-- KEYS: 1 resolvedat, 2 open, 3 lastchange, 4 due, 5 idx:all, 6 idx:resolved, 7 outbox,
-- 8 outbox:tok, 9 outbox:delayed, 10 outbox:sid, 11 seen:at.
-- ARGV: 1 resolved-before ms, 2 seen-before ms, 3 limit, 4 {tag}:inc:, 5 {tag}:tl:,
-- 6 {tag}:refs:.
local limit = tonumber(ARGV[3])
local gone, out, n = {}, {}, 0
local rows = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, limit)
for _, id in ipairs(rows) do
  redis.call('ZREM', KEYS[1], id)
  local key = ARGV[4] .. id
  if redis.call('HGET', key, 'status') == 'resolved' then
    local fp = cjson.decode(redis.call('HGET', key, 'data')).fingerprint
    redis.call('DEL', key, ARGV[5] .. id, ARGV[6] .. id)
    redis.call('ZREM', KEYS[4], id)
    redis.call('ZREM', KEYS[5], id)
    redis.call('ZREM', KEYS[6], id)
    if redis.call('HGET', KEYS[2], fp) == id then redis.call('HDEL', KEYS[2], fp) end
    if redis.call('HEXISTS', KEYS[2], fp) == 0 then
      local lc = redis.call('HGET', KEYS[3], fp)
      if lc and tonumber(lc) < tonumber(ARGV[1]) then redis.call('HDEL', KEYS[3], fp) end
    end
    gone[id] = true
    table.insert(out, id)
    table.insert(out, fp)
  end
end
if #out > 0 then
  local all = redis.call('HGETALL', KEYS[7])
  for j = 1, #all, 2 do
    local d = cjson.decode(all[j + 1])
    if gone[d.incident] then
      local did = all[j]
      redis.call('HDEL', KEYS[7], did)
      redis.call('HDEL', KEYS[8], did)
      redis.call('ZREM', KEYS[9], did)
      redis.call('HDEL', KEYS[10], did)
    end
  end
end
local seen = redis.call('ZRANGEBYSCORE', KEYS[11], '-inf', '(' .. ARGV[2], 'LIMIT', 0, limit)
for _, key in ipairs(seen) do
  redis.call('ZREM', KEYS[11], key)
  redis.call('DEL', key)
  n = n + 1
end
return {out, n}
