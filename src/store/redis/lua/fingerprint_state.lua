-- The open incident (JSON or '') and the last change (ms or '') of a fingerprint.
-- KEYS: 1 open, 2 lastchange. ARGV: 1 fingerprint, 2 the incident key prefix.
local data = ''
local id = redis.call('HGET', KEYS[1], ARGV[1])
if id then data = redis.call('HGET', ARGV[2] .. id, 'data') or '' end
local lc = redis.call('HGET', KEYS[2], ARGV[1]) or ''
return {data, lc}
