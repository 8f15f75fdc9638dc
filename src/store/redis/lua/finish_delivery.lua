-- The end of one attempt. Returns 1 when the row was still at the caller's attempt (and was
-- acknowledged, removed or rescheduled), 0 for a replayed or stale finish.
--
-- KEYS: 1 outbox, 2 outbox:tok, 3 outbox:sid, 4 outbox:delayed, 5 outbox:stream, 6 timeline,
-- 7 refs.
-- ARGV: 1 delivery id, 2 its token, 3 group, 4 done|retry, 5 retry token, 6 retry not_before ms,
-- 7 retry JSON, 8 channel, 9 has reference, 10 reference, 11 n entries, the entries, then
-- n follow-ups, each (id, token, not_before ms, JSON).
local id = ARGV[1]
local current = redis.call('HGET', KEYS[2], id) == ARGV[2]
if current then
  local sid = redis.call('HGET', KEYS[3], id)
  if sid then
    redis.call('XACK', KEYS[5], ARGV[3], sid)
    redis.call('XDEL', KEYS[5], sid)
    redis.call('HDEL', KEYS[3], id)
  end
  redis.call('ZREM', KEYS[4], id)
  if ARGV[4] == 'retry' then
    redis.call('HSET', KEYS[1], id, ARGV[7])
    redis.call('HSET', KEYS[2], id, ARGV[5])
    redis.call('ZADD', KEYS[4], ARGV[6], id)
  else
    redis.call('HDEL', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
  end
end
local i = 11
local n = tonumber(ARGV[i])
for j = 1, n do redis.call('RPUSH', KEYS[6], ARGV[i + j]) end
i = i + n + 1
n = tonumber(ARGV[i])
if current then
  for j = 0, n - 1 do
    local o = i + 1 + j * 4
    redis.call('HSET', KEYS[1], ARGV[o], ARGV[o + 3])
    redis.call('HSET', KEYS[2], ARGV[o], ARGV[o + 1])
    redis.call('ZADD', KEYS[4], ARGV[o + 2], ARGV[o])
  end
end
if ARGV[9] == '1' then redis.call('HSETNX', KEYS[7], ARGV[8], ARGV[10]) end
if current then return 1 end
return 0
