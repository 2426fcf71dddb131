//! Lua scripts: every multi-key update runs as one script, so Redis applies it atomically, and
//! every script checks before it writes, so a rejected call changes nothing.
//!
//! Documents are hash fields `"<version> <json>"`; numbers in Lua are doubles, exact up to
//! 2^53 (the store rejects larger event ids and sequences).

/// KEYS: doc hash, key index (zset), scope index (zset).
/// ARGV: key, json, mode (`any` | `create` | `update`), expected version, scope.
/// → `{1, new_version}` or `{0, found}` (`found` = -1 when missing).
pub(crate) const PUT_DOC: &str = r"
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local v = 0
if cur then v = tonumber(string.match(cur, '^(%d+) ')) end
local mode = ARGV[3]
if mode == 'create' and cur then return {0, v} end
if mode == 'update' then
  if not cur then return {0, -1} end
  if v ~= tonumber(ARGV[4]) then return {0, v} end
end
local nv = v + 1
redis.call('HSET', KEYS[1], ARGV[1], string.format('%d', nv) .. ' ' .. ARGV[2])
if not cur then
  redis.call('ZADD', KEYS[2], 0, ARGV[1])
  redis.call('ZADD', KEYS[3], 0, ARGV[5])
end
return {1, nv}
";

/// KEYS: doc hash, key index, scope index. ARGV: key, scope. → 1 if it existed, else 0.
pub(crate) const DELETE_DOC: &str = r"
local n = redis.call('HDEL', KEYS[1], ARGV[1])
if n == 1 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  if redis.call('ZCARD', KEYS[2]) == 0 then redis.call('ZREM', KEYS[3], ARGV[2]) end
end
return n
";

/// KEYS: doc hash, key index. ARGV: lex min (`-` or `(<after>`), limit (> 0).
/// → `{total, key1, value1, key2, value2, …}` (all strings), from one snapshot.
pub(crate) const LIST_DOCS: &str = r"
local keys = redis.call('ZRANGEBYLEX', KEYS[2], ARGV[1], '+', 'LIMIT', 0, ARGV[2])
local out = {tostring(redis.call('ZCARD', KEYS[2]))}
for _, k in ipairs(keys) do
  local v = redis.call('HGET', KEYS[1], k)
  if not v then return redis.error_reply('index lists ' .. k .. ' but the document is missing') end
  out[#out + 1] = k
  out[#out + 1] = v
end
return out
";

/// KEYS: doc hash, key index, scope index. ARGV: scope. → number of documents removed.
pub(crate) const DELETE_SCOPE: &str = r"
local n = redis.call('HLEN', KEYS[1])
redis.call('UNLINK', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
return n
";

/// KEYS: last-global-seq string, global stream, then one stream per session of the batch.
/// ARGV: number of sessions S, the S session ids (matching KEYS[3..]), then 7 values per
/// event: session index (0 = global event), id, global seq, type, has-tenant (`0`/`1`),
/// tenant, json.
/// Checks every event first (sequences increase past the stored high-water mark, ids continue
/// each session's stream densely); then writes each event to its session stream (entry id
/// `<id>-0`) and to the global stream (entry id `<seq>-0`), and raises the high-water mark.
/// → `{1}` or `{0, reason}` (nothing written).
pub(crate) const APPEND: &str = r"
local S = tonumber(ARGV[1])
local base = S + 2
local n = (#ARGV - base + 1) / 7
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local top = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if #top > 0 then
  local t = tonumber(string.match(top[1][1], '^(%d+)'))
  if t > last then last = t end
end
local nextid = {}
for k = 1, S do
  local e = redis.call('XREVRANGE', KEYS[2 + k], '+', '-', 'COUNT', 1)
  local lid = 0
  if #e > 0 then lid = tonumber(string.match(e[1][1], '^(%d+)')) end
  nextid[k] = lid + 1
end
local prev = last
for i = 0, n - 1 do
  local o = base + i * 7
  local k = tonumber(ARGV[o])
  local id = tonumber(ARGV[o + 1])
  local seq = tonumber(ARGV[o + 2])
  if seq <= prev then
    return {0, 'global sequence ' .. ARGV[o + 2] .. ' does not exceed ' .. string.format('%d', prev)}
  end
  prev = seq
  if k > 0 then
    if id ~= nextid[k] then
      return {0, 'event id ' .. ARGV[o + 1] .. ' of session ' .. ARGV[1 + k] ..
        ' is not dense (expected ' .. string.format('%d', nextid[k]) .. ')'}
    end
    nextid[k] = id + 1
  end
end
for i = 0, n - 1 do
  local o = base + i * 7
  local k = tonumber(ARGV[o])
  local g = {KEYS[2], ARGV[o + 2] .. '-0'}
  if k > 0 then
    local s = {KEYS[2 + k], ARGV[o + 1] .. '-0', 'g', ARGV[o + 2], 'e', ARGV[o + 3], 'j', ARGV[o + 6]}
    if ARGV[o + 4] == '1' then s[#s + 1] = 't'; s[#s + 1] = ARGV[o + 5] end
    redis.call('XADD', unpack(s))
    g[#g + 1] = 's'; g[#g + 1] = ARGV[1 + k]
  end
  g[#g + 1] = 'i'; g[#g + 1] = ARGV[o + 1]
  g[#g + 1] = 'e'; g[#g + 1] = ARGV[o + 3]
  g[#g + 1] = 'j'; g[#g + 1] = ARGV[o + 6]
  if ARGV[o + 4] == '1' then g[#g + 1] = 't'; g[#g + 1] = ARGV[o + 5] end
  redis.call('XADD', unpack(g))
end
redis.call('SET', KEYS[1], ARGV[base + (n - 1) * 7 + 2])
return {1}
";

/// KEYS: session stream, global stream. ARGV: chunk size.
/// Removes up to one chunk of the session's oldest events (and their global entries); deletes
/// the stream once empty (so the session's ids restart at 1). → 1 while events remain, else 0.
pub(crate) const DELETE_EVENTS_CHUNK: &str = r"
local entries = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', ARGV[1])
local ids = {}
local gids = {}
for _, e in ipairs(entries) do
  ids[#ids + 1] = e[1]
  local f = e[2]
  for j = 1, #f, 2 do
    if f[j] == 'g' then gids[#gids + 1] = f[j + 1] .. '-0' end
  end
end
if #gids > 0 then redis.call('XDEL', KEYS[2], unpack(gids)) end
if #ids > 0 then redis.call('XDEL', KEYS[1], unpack(ids)) end
if redis.call('XLEN', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[1])
  return 0
end
return 1
";

/// KEYS: lease. ARGV: token, ttl ms. → 1 if renewed (still ours), else 0.
pub(crate) const RENEW_LEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
";

/// KEYS: lease. ARGV: token. → 1 if it was ours and is released, else 0.
pub(crate) const RELEASE_LEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";
