-- Removes consumers that hold nothing and have been idle longer than ARGV[2] ms.
-- KEYS: 1 outbox:stream. ARGV: 1 group, 2 idle ms.
local removed = 0
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local name, pending, idle = nil, 0, 0
  for k = 1, #c, 2 do
    if c[k] == 'name' then name = c[k + 1] end
    if c[k] == 'pending' then pending = c[k + 1] end
    if c[k] == 'idle' then idle = c[k + 1] end
  end
  if name and pending == 0 and idle > tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
    removed = removed + 1
  end
end
return removed
