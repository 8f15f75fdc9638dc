-- Promotes due rows into the stream and hands this consumer its share. Returns delivery JSONs.
--
-- KEYS: 1 outbox:delayed, 2 outbox, 3 outbox:sid, 4 outbox:stream, 5 outbox:cursor.
-- ARGV: 1 now ms, 2 limit, 3 group, 4 consumer, 5 lease ms.
local limit, group, consumer = tonumber(ARGV[2]), ARGV[3], ARGV[4]
redis.pcall('XGROUP', 'CREATE', KEYS[4], group, '0', 'MKSTREAM')
local ready = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, limit)
for j = 1, #ready, 2 do
  local id = ready[j]
  redis.call('ZREM', KEYS[1], id)
  if redis.call('HEXISTS', KEYS[2], id) == 1 then
    local sid = redis.call('XADD', KEYS[4], '*', 'd', id, 'nb', ready[j + 1])
    redis.call('HSET', KEYS[3], id, sid)
  end
end
local out = {}
-- An entry whose row is gone or has moved on (finished, or rescheduled under a newer entry) is
-- dropped from the stream instead of being handed out.
local function take(entries)
  for _, e in ipairs(entries) do
    local sid, fields, id = e[1], e[2], nil
    if type(fields) == 'table' then
      for k = 1, #fields, 2 do
        if fields[k] == 'd' then id = fields[k + 1] end
      end
    end
    local row = false
    if id and redis.call('HGET', KEYS[3], id) == sid then
      row = redis.call('HGET', KEYS[2], id)
    end
    if row then
      table.insert(out, row)
    else
      redis.call('XACK', KEYS[4], group, sid)
      redis.call('XDEL', KEYS[4], sid)
    end
  end
end
local function entries_of(reply)
  if type(reply) == 'table' and reply[1] then return reply[1][2] end
  return {}
end
take(entries_of(redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', limit, 'STREAMS', KEYS[4], '0')))
if #out < limit then
  local cursor = redis.call('GET', KEYS[5]) or '0-0'
  local claimed = redis.call('XAUTOCLAIM', KEYS[4], group, consumer, ARGV[5], cursor, 'COUNT', limit - #out)
  redis.call('SET', KEYS[5], claimed[1])
  take(claimed[2])
end
if #out < limit then
  take(entries_of(redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', limit - #out, 'STREAMS', KEYS[4], '>')))
end
return out
