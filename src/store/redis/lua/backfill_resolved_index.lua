-- The next step of indexing in resolvedat the resolved incidents written before it existed:
-- the JSON of those of the next ARGV[1] ids of idx:resolved (after the cursor) not indexed
-- yet; the caller reads their resolve times and adds them. Returns {more (0|1), {id, JSON, …}}.
--
-- KEYS: 1 idx:resolved, 2 resolvedat, 3 prune:backfill (the last id looked at, or done).
-- ARGV: 1 step, 2 {tag}:inc:.
local cursor = redis.call('GET', KEYS[3])
if cursor == 'done' then return {0, {}} end
local lower = '-'
if cursor then lower = '(' .. cursor end
local step = tonumber(ARGV[1])
local ids = redis.call('ZRANGEBYLEX', KEYS[1], lower, '+', 'LIMIT', 0, step)
local out = {}
for _, id in ipairs(ids) do
  if not redis.call('ZSCORE', KEYS[2], id) then
    local data = redis.call('HGET', ARGV[2] .. id, 'data')
    if data then
      table.insert(out, id)
      table.insert(out, data)
    end
  end
end
if #ids < step then
  redis.call('SET', KEYS[3], 'done')
  return {0, out}
end
redis.call('SET', KEYS[3], ids[#ids])
return {1, out}
