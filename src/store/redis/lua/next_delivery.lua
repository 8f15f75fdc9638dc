-- The earliest not_before among rows waiting to be handed out: the delayed set's first score,
-- or the first stream entry no consumer has read yet. Rows already handed to a replica are its
-- business (and reach another one through the lease), so they do not make every worker poll.
--
-- KEYS: 1 outbox:delayed, 2 outbox:stream. ARGV: 1 group.
local best = false
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #first == 2 then best = tonumber(first[2]) end
if redis.call('EXISTS', KEYS[2]) == 1 then
  local last = '0-0'
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[2])) do
    local name, delivered = nil, nil
    for k = 1, #g, 2 do
      if g[k] == 'name' then name = g[k + 1] end
      if g[k] == 'last-delivered-id' then delivered = g[k + 1] end
    end
    if name == ARGV[1] then last = delivered end
  end
  local fresh = redis.call('XRANGE', KEYS[2], '(' .. last, '+', 'COUNT', 1)
  if #fresh == 1 then
    local fields = fresh[1][2]
    for k = 1, #fields, 2 do
      if fields[k] == 'nb' then
        local nb = tonumber(fields[k + 1])
        if (not best) or nb < best then best = nb end
      end
    end
  end
end
return best
