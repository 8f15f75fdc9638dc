-- One transition, all or nothing. Returns duplicate, conflict or committed.
--
-- KEYS: 1 seen, 2 open, 3 lastchange, 4 due, 5 outbox:delayed, 6 outbox, 7 outbox:tok,
-- 8 idx:all, 9 idx:triggered, 10 idx:acknowledged, 11 idx:resolved, 12 guarded incident,
-- 13 written incident, 14 timeline, 15 resolvedat, 16 seen:at, then one record hash per record
-- written.
-- ARGV: 1 has delivery id, 2 seen ttl (s), 3 seen at (ms), 4 guard kind (none|open|version),
-- 5 guard fingerprint or version, 6 has incident, 7 id, 8 JSON, 9 version, 10 status,
-- 11 fingerprint, 12 next_due ms or '', 13 last_change fingerprint or '', 14 last_change ms,
-- 15 resolved at ms or '', 16 n timeline entries, the entries, then n deliveries, each (id,
-- token, not_before ms, JSON), then n records, each (id, value) for the hash KEYS[16 + j].
local function idx(status)
  if status == 'triggered' then return KEYS[9] end
  if status == 'acknowledged' then return KEYS[10] end
  return KEYS[11]
end
if ARGV[1] == '1' and redis.call('EXISTS', KEYS[1]) == 1 then return 'duplicate' end
if ARGV[4] == 'open' then
  if redis.call('HEXISTS', KEYS[2], ARGV[5]) == 1 then return 'conflict' end
elseif ARGV[4] == 'version' then
  if redis.call('HGET', KEYS[12], 'version') ~= ARGV[5] then return 'conflict' end
end
if ARGV[6] == '1' then
  local id, status, fp = ARGV[7], ARGV[10], ARGV[11]
  local prev = redis.call('HGET', KEYS[13], 'status')
  redis.call('ZREM', KEYS[4], id)
  if ARGV[12] ~= '' then redis.call('ZADD', KEYS[4], ARGV[12], id) end
  if status ~= 'resolved' then
    redis.call('HSET', KEYS[2], fp, id)
  elseif redis.call('HGET', KEYS[2], fp) == id then
    redis.call('HDEL', KEYS[2], fp)
  end
  if prev then redis.call('ZREM', idx(prev), id) end
  redis.call('ZADD', idx(status), 0, id)
  redis.call('ZADD', KEYS[8], 0, id)
  if status == 'resolved' and ARGV[15] ~= '' then
    redis.call('ZADD', KEYS[15], ARGV[15], id)
  else
    redis.call('ZREM', KEYS[15], id)
  end
  redis.call('HSET', KEYS[13], 'data', ARGV[8], 'version', ARGV[9], 'status', status)
end
local i = 16
local n = tonumber(ARGV[i])
for j = 1, n do redis.call('RPUSH', KEYS[14], ARGV[i + j]) end
i = i + n + 1
n = tonumber(ARGV[i])
for j = 0, n - 1 do
  local o = i + 1 + j * 4
  redis.call('HSET', KEYS[6], ARGV[o], ARGV[o + 3])
  redis.call('HSET', KEYS[7], ARGV[o], ARGV[o + 1])
  redis.call('ZADD', KEYS[5], ARGV[o + 2], ARGV[o])
end
i = i + 1 + n * 4
n = tonumber(ARGV[i])
for j = 1, n do
  local o = i + 1 + (j - 1) * 2
  redis.call('HSET', KEYS[16 + j], ARGV[o], ARGV[o + 1])
end
if ARGV[1] == '1' then
  redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[2])
  redis.call('ZADD', KEYS[16], ARGV[3], KEYS[1])
end
if ARGV[13] ~= '' then
  local old = redis.call('HGET', KEYS[3], ARGV[13])
  if (not old) or tonumber(old) < tonumber(ARGV[14]) then
    redis.call('HSET', KEYS[3], ARGV[13], ARGV[14])
  end
end
return 'committed'
