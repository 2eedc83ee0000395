-- The tidings Store on Redis: one script, every operation of the Store trait, each run
-- atomically by EVALSHA. ARGV[1] is the operation, ARGV[2] the key prefix, ARGV[3] the topic
-- (empty for operations over every topic), then the operation's arguments. The batch
-- operations (append_batch, settle, settle_claim) take ARGV itself rather than unpacked
-- arguments: a batch can hold more values than Lua's stack lets `unpack` pass.
--
-- Every reply is a table whose first element is a status: 'ok', 'notfound', 'invalid' or
-- 'corrupt' (then the second element is a message). Numbers that must stay exact (message ids,
-- publish times) travel as strings; offsets, counts and times are compared as Lua numbers
-- (doubles), exact below 2^53.
--
-- Key layout (the crate docs describe it for operators):
--   P..'topics'              SET of topic names
--   B = P..'{'..T..'}'       the topic's base: the braces make it a cluster hash tag, and a
--                            topic name cannot contain '}', so no two topics' keys collide
--   B..':meta'               HASH head, first, bytes (exists iff the topic exists)
--   B..':log'                STREAM of messages, entry id '<offset>-0', fields id ev data at
--                            [bin]: bin only for a message with binary attachments,
--                            '<attachment bytes> <base64>,<base64>,...' (encoded by Rust)
--                            consumer group per subscription, named by its key (id:x, group:x):
--                            last-delivered-id = cursor - 1, PEL = pending entries
--   B..':subs'               SET of subscription keys
--   B..':gaps'               HASH subscription key -> gaps
--   B..':keys'               HASH idempotency key -> '<offset> <id> <seen_at>'
--   B..':keyat'              ZSET idempotency key, score seen_at
--   B..':s:'..S..':due'      ZSET pending offset, score due time (deadline or not_before)
--   B..':s:'..S..':att'      HASH pending offset -> deliveries made
--   B..':s:'..S..':flight'   SET pending offsets that are in flight (the others wait)
--   B..':s:'..S..':dead'     HASH offset -> '<attempts> <dead_at> <published_at> <id> <#event> <event><data>'
--                            or, with attachments, '... <#event>:<#data> <event><data><bin>'
--   B..':s:'..S..':members'  SET identities (group subscriptions)

local OP = ARGV[1]
local P = ARGV[2]
local CONSUMER = 'tidings'

local function K(topic)
  local b = P .. '{' .. topic .. '}'
  return {
    meta = b .. ':meta', log = b .. ':log', subs = b .. ':subs', gaps = b .. ':gaps',
    keys = b .. ':keys', keyat = b .. ':keyat',
    sub = function(s, what) return b .. ':s:' .. s .. ':' .. what end,
  }
end

local function sub_keys(k, s)
  return {
    due = k.sub(s, 'due'), att = k.sub(s, 'att'), flight = k.sub(s, 'flight'),
    dead = k.sub(s, 'dead'), members = k.sub(s, 'members'),
  }
end

local function sid(offset) return tostring(offset) .. '-0' end

local function offset_of(id) return tonumber(string.match(id, '^(%d+)')) end

local function exists(k) return redis.call('EXISTS', k.meta) == 1 end

local function create_topic(k, topic)
  if not exists(k) then
    redis.call('HSET', k.meta, 'head', 0, 'first', 1, 'bytes', 0)
    redis.call('SADD', P .. 'topics', topic)
  end
end

-- head, first, bytes
local function meta(k)
  local m = redis.call('HMGET', k.meta, 'head', 'first', 'bytes')
  return tonumber(m[1] or 0), tonumber(m[2] or 1), tonumber(m[3] or 0)
end

-- Fields of a stream entry as a map.
local function fields(raw)
  local f = {}
  for i = 1, #raw, 2 do f[raw[i]] = raw[i + 1] end
  return f
end

-- A message as returned to Rust: offset, id, event, data, published_at[, bin].
local function message(offset, f)
  return {offset, f['id'], f['ev'], f['data'], f['at'], f['bin']}
end

-- The attachment bytes a `bin` field counts (0 without one).
local function bin_bytes(bin)
  if not bin or bin == '' then return 0 end
  return tonumber(string.match(bin, '^(%d+) ')) or 0
end

local function read_message(k, offset)
  local r = redis.call('XRANGE', k.log, sid(offset), sid(offset))
  if #r == 0 then return nil end
  return fields(r[1][2])
end

-- subscription key -> cursor, from the consumer groups' last-delivered ids.
local function cursors(k)
  local out = {}
  if redis.call('EXISTS', k.log) == 0 then return out end
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', k.log)) do
    local f = fields(g)
    out[f['name']] = offset_of(f['last-delivered-id']) + 1
  end
  return out
end

local function sub_info(k, s, head, cursor)
  local sk = sub_keys(k, s)
  local pending = redis.call('ZCARD', sk.due) + (head + 1 - cursor)
  return {s, pending, redis.call('SCARD', sk.flight), redis.call('HLEN', sk.dead),
    tonumber(redis.call('HGET', k.gaps, s) or 0), cursor}
end

local function is_sub(k, s) return redis.call('SISMEMBER', k.subs, s) == 1 end

local function numeric(a, b) return tonumber(a) < tonumber(b) end

-- Settles a pending entry: out of the extra state and out of the group's PEL.
local function settle(k, sk, s, o)
  redis.call('ZREM', sk.due, o)
  redis.call('HDEL', sk.att, o)
  redis.call('SREM', sk.flight, o)
  redis.call('XACK', k.log, s, sid(o))
end

local function bury(sk, o, f, attempts, now)
  local ev = f['ev']
  local head = attempts .. ' ' .. now .. ' ' .. f['at'] .. ' ' .. f['id'] .. ' ' .. #ev
  if f['bin'] then
    redis.call('HSET', sk.dead, o, head .. ':' .. #f['data'] .. ' ' .. ev .. f['data'] .. f['bin'])
  else
    redis.call('HSET', sk.dead, o, head .. ' ' .. ev .. f['data'])
  end
end

local ops = {}

-- The reply of a duplicate append, if `key` was seen within the window; nil otherwise.
local function duplicate(k, key, at, window)
  if key == '' then return nil end
  local rec = redis.call('HGET', k.keys, key)
  if not rec then return nil end
  local off, first_id, seen = string.match(rec, '^(%S+) (%S+) (%S+)$')
  local age = tonumber(at) - tonumber(seen)
  if age < 0 then age = 0 end
  if age <= tonumber(window) then return {'ok', tonumber(off), first_id, 1} end
  return nil
end

-- Every subscription of the topic with its queue depth (pending + never delivered), by key.
local function depths(k)
  local head = meta(k)
  local cur = cursors(k)
  local subs = redis.call('SMEMBERS', k.subs)
  table.sort(subs)
  local out = {}
  for _, s in ipairs(subs) do
    table.insert(out, {s, redis.call('ZCARD', k.sub(s, 'due')) + (head + 1 - cur[s]), cur[s]})
  end
  return out
end

-- Appends ascending runs of offsets: push(runs, from, to) merges with the last if adjacent.
local function push_run(runs, from, to)
  local last = runs[#runs]
  if last and last[2] + 1 == from then last[2] = to else table.insert(runs, {from, to}) end
end

-- Most values one variadic command gets (unpack is bounded by the Lua stack); even, so that
-- score/member and field/value pairs are never split.
local CHUNK = 1000

-- redis.call(head..., values...) in chunks of at most CHUNK values: one command per chunk
-- instead of one per value.
local function variadic(head, values)
  for i = 1, #values, CHUNK do
    local args = {unpack(head)}
    for j = i, math.min(i + CHUNK - 1, #values) do args[#args + 1] = values[j] end
    redis.call(unpack(args))
  end
end

-- The scores of `members` in a sorted set (false where absent), with ZMSCORE in chunks.
local function scores_of(key, members)
  local out = {}
  for i = 1, #members, CHUNK do
    local r = redis.call('ZMSCORE', key, unpack(members, i, math.min(i + CHUNK - 1, #members)))
    for _, v in ipairs(r) do out[#out + 1] = v end
  end
  return out
end

-- The text of an error raised by redis.call (a table in Redis 7, a string before).
local function err_text(e)
  if type(e) == 'table' then return tostring(e.err or e[1]) end
  return tostring(e)
end

-- Only a key of the wrong type is this topic's own corruption; anything else (out of memory,
-- a read-only replica, a failing disk) concerns the whole server and fails the whole script.
local function only_wrongtype(e)
  local text = err_text(e)
  if not string.find(text, 'WRONGTYPE', 1, true) then error(e) end
  return text
end

-- topic, id, event, data, published_at, key ('' for none), dedup_window, bin ('' for none)
function ops.append(topic, id, ev, data, at, key, window, bin)
  local k = K(topic)
  local dup = duplicate(k, key, at, window)
  if dup then return dup end
  create_topic(k, topic)
  local off = redis.call('HINCRBY', k.meta, 'head', 1)
  redis.call('HINCRBY', k.meta, 'bytes', #data + bin_bytes(bin))
  if bin and bin ~= '' then
    redis.call('XADD', k.log, sid(off), 'id', id, 'ev', ev, 'data', data, 'at', at, 'bin', bin)
  else
    redis.call('XADD', k.log, sid(off), 'id', id, 'ev', ev, 'data', data, 'at', at)
  end
  if key ~= '' then
    redis.call('HSET', k.keys, key, off .. ' ' .. id .. ' ' .. at)
    redis.call('ZADD', k.keyat, at, key)
  end
  return {'ok', off, id, 0}
end

-- The fields of one message in append_batch's arguments: topic, id, event, data,
-- published_at, key ('' for none), dedup_window, bin ('' for none). (A new per-message field
-- goes at the end, here and in APPEND_FIELDS of append.rs.)
local APPEND_FIELDS = 8

-- One message of append_batch into topic state `t` (its keys, head and bytes so far).
local function append_one(t, id, ev, data, at, key, window, bin)
  local dup = duplicate(t.k, key, at, window)
  if dup then return dup end
  local off = t.head + 1
  if bin ~= '' then
    redis.call('XADD', t.k.log, sid(off), 'id', id, 'ev', ev, 'data', data, 'at', at, 'bin', bin)
  else
    redis.call('XADD', t.k.log, sid(off), 'id', id, 'ev', ev, 'data', data, 'at', at)
  end
  t.head = off
  t.bytes = t.bytes + #data + bin_bytes(bin)
  if key ~= '' then
    redis.call('HSET', t.k.keys, key, off .. ' ' .. id .. ' ' .. at)
    redis.call('ZADD', t.k.keyat, at, key)
  end
  return {'ok', off, id, 0}
end

-- Many appends, of any topics, in one script (the store's group commit): ARGV[4..] holds
-- APPEND_FIELDS values per message. The messages of a topic get consecutive offsets in the
-- order given; a key repeated within the batch is a duplicate of its first message. Per
-- topic, once: the topic is created if new and its head read; at the end its head and bytes
-- move by what was appended. Per message: one XADD (plus the key's HSET and ZADD). Replies
-- one entry per message: {'ok', offset, id, duplicate} or {'corrupt', reason} (a key of that
-- topic has the wrong type; the other topics' messages are not affected).
function ops.append_batch(args)
  local topics, order, out = {}, {}, {'ok'}
  for i = 4, #args, APPEND_FIELDS do
    local name = args[i]
    local t = topics[name]
    if not t then
      t = {k = K(name), bytes = 0}
      local ok, head = pcall(function()
        local h = redis.call('HGET', t.k.meta, 'head')
        if not h then
          create_topic(t.k, name)
          h = 0
        end
        return tonumber(h)
      end)
      if ok then
        t.head, t.head0 = head, head
      else
        t.err = only_wrongtype(head)
      end
      topics[name] = t
      order[#order + 1] = name
    end
    if t.err then
      out[#out + 1] = {'corrupt', t.err}
    else
      local ok, r = pcall(append_one, t, args[i + 1], args[i + 2], args[i + 3], args[i + 4],
        args[i + 5], args[i + 6], args[i + 7])
      if ok then out[#out + 1] = r else out[#out + 1] = {'corrupt', only_wrongtype(r)} end
    end
  end
  for _, name in ipairs(order) do
    local t = topics[name]
    if not t.err and t.head ~= t.head0 then
      redis.call('HINCRBY', t.k.meta, 'head', t.head - t.head0)
      redis.call('HINCRBY', t.k.meta, 'bytes', t.bytes)
    end
  end
  return out
end

-- topic, id, event, data, published_at, key, dedup_window, max_depth, overflow ('reject' |
-- 'drop-oldest'), bin ('' for none). Stored: {'ok', offset, id, duplicate, {{sub, from, to}...}} (the dropped
-- runs); refused: {'ok', 0, '', 0, {}, sub, depth}.
function ops.append_bounded(topic, id, ev, data, at, key, window, max_s, overflow, bin)
  local k = K(topic)
  local max = tonumber(max_s)
  if exists(k) then
    local dup = duplicate(k, key, at, window)
    if dup then
      table.insert(dup, {})
      return dup
    end
    if overflow == 'reject' then
      for _, d in ipairs(depths(k)) do
        if d[2] >= max then return {'ok', 0, '', 0, {}, d[1], d[2]} end
      end
    end
  end
  local r = ops.append(topic, id, ev, data, at, key, window, bin)
  local dropped = {}
  if overflow == 'drop-oldest' and r[4] == 0 then
    for _, d in ipairs(depths(k)) do
      local s, excess, cursor = d[1], d[2] - max, d[3]
      if excess > 0 then
        local sk = sub_keys(k, s)
        -- Pending entries are all below the cursor: they are the oldest.
        local pending = redis.call('ZRANGE', sk.due, 0, -1)
        table.sort(pending, numeric)
        local runs, n = {}, 0
        for _, o in ipairs(pending) do
          if n >= excess then break end
          settle(k, sk, s, o)
          push_run(runs, tonumber(o), tonumber(o))
          n = n + 1
        end
        local skip = excess - n
        if skip > 0 then
          push_run(runs, cursor, cursor + skip - 1)
          redis.call('XGROUP', 'SETID', k.log, s, sid(cursor + skip - 1))
        end
        for _, run in ipairs(runs) do table.insert(dropped, {s, run[1], run[2]}) end
        redis.call('HINCRBY', k.gaps, s, excess)
      end
    end
  end
  table.insert(r, dropped)
  return r
end

-- topic, sub, mode ('new' | 'earliest' | 'offset'), offset
function ops.subscribe(topic, s, mode, from)
  local k = K(topic)
  local head, first = meta(k)
  if exists(k) and is_sub(k, s) then
    return {'ok', sub_info(k, s, head, cursors(k)[s])}
  end
  local cursor
  if mode == 'new' then
    cursor = head + 1
  elseif mode == 'earliest' then
    cursor = first
  else
    local o = tonumber(from)
    if o > head + 1 then
      return {'invalid', 'start offset ' .. from .. ' is beyond the head ' .. head .. ' of the topic'}
    end
    cursor = math.max(o, first)
  end
  create_topic(k, topic)
  redis.call('XGROUP', 'CREATE', k.log, s, sid(cursor - 1), 'MKSTREAM')
  redis.call('SADD', k.subs, s)
  return {'ok', sub_info(k, s, head, cursor)}
end

function ops.unsubscribe(topic, s)
  local k = K(topic)
  if not (exists(k) and is_sub(k, s)) then return {'ok', 0} end
  local sk = sub_keys(k, s)
  redis.call('XGROUP', 'DESTROY', k.log, s)
  redis.call('DEL', sk.due, sk.att, sk.flight, sk.dead, sk.members)
  redis.call('HDEL', k.gaps, s)
  redis.call('SREM', k.subs, s)
  return {'ok', 1}
end

-- Every (topic, subscription key).
function ops.subscriptions()
  local out = {}
  for _, t in ipairs(redis.call('SMEMBERS', P .. 'topics')) do
    for _, s in ipairs(redis.call('SMEMBERS', K(t).subs)) do
      table.insert(out, {t, s})
    end
  end
  return {'ok', out}
end

-- topic, group subscription key, identity, '1' to add or '0' to remove
function ops.set_member(topic, s, who, add)
  local k = K(topic)
  if not (exists(k) and is_sub(k, s)) then return {'notfound', 'no group subscription'} end
  if add == '1' then
    redis.call('SADD', k.sub(s, 'members'), who)
  else
    redis.call('SREM', k.sub(s, 'members'), who)
  end
  return {'ok'}
end

-- Every (topic, group subscription key, identity).
function ops.members()
  local out = {}
  for _, t in ipairs(redis.call('SMEMBERS', P .. 'topics')) do
    local k = K(t)
    for _, s in ipairs(redis.call('SMEMBERS', k.subs)) do
      for _, who in ipairs(redis.call('SMEMBERS', k.sub(s, 'members'))) do
        table.insert(out, {t, s, who})
      end
    end
  end
  return {'ok', out}
end

-- Hands out up to `max` entries of subscription `s` (see Store::claim): the due pending
-- entries first (each read, counted and re-timed on its own: redeliveries are rare), then new
-- messages with one XREADGROUP, whose state is written with one variadic HSET, ZADD and SADD
-- for the whole batch. Replies {'ok', claimed, dead, first due time or false}.
local function claim(k, s, now_s, max_s, deadline, maxdel_s)
  local sk = sub_keys(k, s)
  local max, maxdel = tonumber(max_s), tonumber(maxdel_s)
  local claimed, dead = {}, {}

  local due = redis.call('ZRANGEBYSCORE', sk.due, '-inf', now_s)
  table.sort(due, numeric)
  for _, o in ipairs(due) do
    if #claimed >= max then break end
    local f = read_message(k, o)
    if not f then
      return {'corrupt', 'offset ' .. o .. ' is pending for ' .. s .. ' but not retained'}
    end
    local attempt = tonumber(redis.call('HGET', sk.att, o) or 0)
    if attempt >= maxdel then
      settle(k, sk, s, o)
      bury(sk, o, f, attempt, now_s)
      table.insert(dead, tonumber(o))
    else
      attempt = attempt + 1
      redis.call('HSET', sk.att, o, attempt)
      redis.call('ZADD', sk.due, deadline, o)
      redis.call('SADD', sk.flight, o)
      -- Mirror the delivery in the group's PEL (delivery count and time).
      redis.call('XCLAIM', k.log, s, CONSUMER, 0, sid(o), 'RETRYCOUNT', attempt, 'JUSTID')
      table.insert(claimed, {message(tonumber(o), f), attempt})
    end
  end

  local want = max - #claimed
  local count = want
  if want > 0 and (maxdel == 0 or want > 1e9) then
    -- Never more than what is there: COUNT must stay an integer Redis can parse (a Lua
    -- number that large would be written in exponent form). With no deliveries allowed,
    -- everything left goes to the dead letters.
    local head = meta(k)
    local cursor = cursors(k)[s]
    count = math.max(0, head - cursor + 1)
    if maxdel ~= 0 then count = math.min(want, count) end
  end
  if count > 0 then
    local r = redis.call('XREADGROUP', 'GROUP', s, CONSUMER, 'COUNT', count, 'STREAMS', k.log, '>')
    if r then
      local att, due_at, flight = {}, {}, {}
      for _, e in ipairs(r[1][2]) do
        local o = offset_of(e[1])
        local f = fields(e[2])
        if maxdel == 0 then
          redis.call('XACK', k.log, s, e[1])
          bury(sk, tostring(o), f, 0, now_s)
          table.insert(dead, o)
        else
          att[#att + 1] = o
          att[#att + 1] = 1
          due_at[#due_at + 1] = deadline
          due_at[#due_at + 1] = o
          flight[#flight + 1] = o
          table.insert(claimed, {message(o, f), 1})
        end
      end
      variadic({'HSET', sk.att}, att)
      variadic({'ZADD', sk.due}, due_at)
      variadic({'SADD', sk.flight}, flight)
    end
  end
  -- The earliest due time of what stays pending (false: nothing is), as a string: Redis
  -- turns Lua numbers into integers, scores are kept exact as strings.
  local first = redis.call('ZRANGE', sk.due, 0, 0, 'WITHSCORES')
  return {'ok', claimed, dead, first[2] or false}
end

-- topic, sub, now, max, deadline (now + ack_timeout), max_deliveries
function ops.claim(topic, s, now_s, max_s, deadline, maxdel_s)
  local k = K(topic)
  if not is_sub(k, s) then return {'notfound', 'no such subscription'} end
  return claim(k, s, now_s, max_s, deadline, maxdel_s)
end

function ops.ack(topic, s, o)
  local k = K(topic)
  if not (exists(k) and is_sub(k, s)) then return {'notfound', 'no such subscription'} end
  local sk = sub_keys(k, s)
  if redis.call('ZSCORE', sk.due, o) then
    settle(k, sk, s, o)
    return {'ok', 1}
  end
  return {'ok', 0}
end

function ops.requeue(topic, s, o, not_before)
  local k = K(topic)
  if not (exists(k) and is_sub(k, s)) then return {'notfound', 'no such subscription'} end
  local sk = sub_keys(k, s)
  if redis.call('ZSCORE', sk.due, o) then
    redis.call('ZADD', sk.due, not_before, o)
    redis.call('SREM', sk.flight, o)
    return {'ok', 1}
  end
  return {'ok', 0}
end

-- Applies ARGV[from..] as (kind, offset, not_before) triples of subscription `s`, in order:
-- 'a' acks, 'r' requeues until not_before. Returns one flag per entry (1: it was pending), as
-- ack and requeue one by one would. The pending check is one ZMSCORE for the batch; the
-- outcome of each offset (its last answer wins, and nothing follows an ack) is then written
-- with one variadic command per key: ZREM, HDEL, SREM and XACK for the acks, ZADD and SREM
-- for the requeues.
local function settle_batch(k, s, args, from)
  local sk = sub_keys(k, s)
  local offsets = {}
  for i = from, #args, 3 do offsets[#offsets + 1] = args[i + 1] end
  local scores = scores_of(sk.due, offsets)
  local pending, requeue_at, flags = {}, {}, {}
  local acked, requeued = {}, {}
  for n, o in ipairs(offsets) do
    if pending[o] == nil then pending[o] = scores[n] ~= false and scores[n] ~= nil end
    if pending[o] then
      flags[n] = 1
      local i = from + (n - 1) * 3
      if args[i] == 'a' then
        pending[o] = false
        requeue_at[o] = nil
        acked[#acked + 1] = o
      else
        if requeue_at[o] == nil then requeued[#requeued + 1] = o end
        requeue_at[o] = args[i + 2]
      end
    else
      flags[n] = 0
    end
  end
  if #acked > 0 then
    local ids = {}
    for n, o in ipairs(acked) do ids[n] = sid(o) end
    variadic({'ZREM', sk.due}, acked)
    variadic({'HDEL', sk.att}, acked)
    variadic({'SREM', sk.flight}, acked)
    variadic({'XACK', k.log, s}, ids)
  end
  local due_at, waiting = {}, {}
  for _, o in ipairs(requeued) do
    if requeue_at[o] ~= nil then
      due_at[#due_at + 1] = requeue_at[o]
      due_at[#due_at + 1] = o
      waiting[#waiting + 1] = o
    end
  end
  if #waiting > 0 then
    variadic({'ZADD', sk.due}, due_at)
    variadic({'SREM', sk.flight}, waiting)
  end
  return flags
end

-- sub, then (kind, offset, not_before) per entry (ARGV[5..]): see settle_batch.
function ops.settle(args)
  local k, s = K(args[3]), args[4]
  if not is_sub(k, s) then return {'notfound', 'no such subscription'} end
  local out = settle_batch(k, s, args, 5)
  table.insert(out, 1, 'ok')
  return out
end

-- sub, now, max, deadline, max_deliveries, then (kind, offset, not_before) per entry
-- (ARGV[9..]): the settle of a dispatcher's answered deliveries and its next claim in one
-- script. Replies {'ok', flags, claimed, dead, first due time or false}.
function ops.settle_claim(args)
  local k, s = K(args[3]), args[4]
  if not is_sub(k, s) then return {'notfound', 'no such subscription'} end
  local flags = settle_batch(k, s, args, 9)
  local r = claim(k, s, args[5], args[6], args[7], args[8])
  if r[1] ~= 'ok' then return r end
  return {'ok', flags, r[2], r[3], r[4]}
end

-- (no topic), now: every in-flight entry of every subscription waits until now.
function ops.release_in_flight(_, now)
  local released = 0
  for _, t in ipairs(redis.call('SMEMBERS', P .. 'topics')) do
    local k = K(t)
    for _, s in ipairs(redis.call('SMEMBERS', k.subs)) do
      local sk = sub_keys(k, s)
      for _, o in ipairs(redis.call('SMEMBERS', sk.flight)) do
        redis.call('ZADD', sk.due, now, o)
        released = released + 1
      end
      redis.call('DEL', sk.flight)
    end
  end
  return {'ok', released}
end

-- Every dead letter of the topic: {sub, offset, record}.
function ops.dead_letters(topic)
  local k = K(topic)
  if not exists(k) then return {'notfound', 'no such topic'} end
  local out = {}
  for _, s in ipairs(redis.call('SMEMBERS', k.subs)) do
    local d = redis.call('HGETALL', k.sub(s, 'dead'))
    for i = 1, #d, 2 do table.insert(out, {s, d[i], d[i + 1]}) end
  end
  return {'ok', out}
end

-- topic, message id, now
function ops.requeue_dead(topic, id, now)
  local k = K(topic)
  if not exists(k) then return {'notfound', 'no such topic'} end
  local _, first = meta(k)
  local found = 0
  for _, s in ipairs(redis.call('SMEMBERS', k.subs)) do
    local sk = sub_keys(k, s)
    local d = redis.call('HGETALL', sk.dead)
    for i = 1, #d, 2 do
      local o = d[i]
      local dead_id = string.match(d[i + 1], '^%S+ %S+ %S+ (%S+) ')
      if dead_id == id and tonumber(o) >= first then
        redis.call('HDEL', sk.dead, o)
        redis.call('ZADD', sk.due, now, o)
        redis.call('HSET', sk.att, o, 0)
        redis.call('SREM', sk.flight, o)
        -- Back into the group's PEL, with no delivery made.
        redis.call('XCLAIM', k.log, s, CONSUMER, 0, sid(o), 'RETRYCOUNT', 0, 'FORCE', 'JUSTID')
        found = 1
      end
    end
  end
  return {'ok', found}
end

-- topic, from, limit (> 0)
function ops.history(topic, from, limit)
  local k = K(topic)
  local out = {}
  if redis.call('EXISTS', k.log) == 0 then return {'ok', out} end
  for _, e in ipairs(redis.call('XRANGE', k.log, from, '+', 'COUNT', limit)) do
    table.insert(out, message(offset_of(e[1]), fields(e[2])))
  end
  return {'ok', out}
end

function ops.topic_info(topic)
  local k = K(topic)
  if not exists(k) then return {'ok', false} end
  local head, first, bytes = meta(k)
  local cur = cursors(k)
  local subs = {}
  for _, s in ipairs(redis.call('SMEMBERS', k.subs)) do
    table.insert(subs, sub_info(k, s, head, cur[s]))
  end
  return {'ok', {head, first, head + 1 - first, bytes, subs}}
end

-- Per subscription with unsettled entries: its key and the publish time of its oldest one —
-- the lowest id of its group's PEL (every pending entry, in flight or waiting, is there), else
-- its cursor when the cursor is at or below the head. O(subscriptions).
function ops.oldest_unsettled(topic)
  local k = K(topic)
  local out = {}
  if not exists(k) then return {'ok', out} end
  local head, first = meta(k)
  local cur = cursors(k)
  for _, s in ipairs(redis.call('SMEMBERS', k.subs)) do
    local offset = nil
    local p = redis.call('XPENDING', k.log, s)
    if tonumber(p[1]) > 0 then
      offset = offset_of(p[2])
    elseif cur[s] and cur[s] <= head then
      offset = math.max(cur[s], first)
    end
    if offset then
      local f = read_message(k, offset)
      if f then table.insert(out, {s, f['at']}) end
    end
  end
  return {'ok', out}
end

function ops.topics()
  return {'ok', redis.call('SMEMBERS', P .. 'topics')}
end

-- topic, max_age, max_messages, max_bytes, now, key threshold ('' for none: keys seen before
-- it are forgotten)
function ops.enforce_retention(topic, max_age_s, max_messages_s, max_bytes_s, now_s, key_before)
  local k = K(topic)
  if not exists(k) then return {'notfound', 'no such topic'} end
  local max_age, max_messages, max_bytes = tonumber(max_age_s), tonumber(max_messages_s),
    tonumber(max_bytes_s)
  local now = tonumber(now_s)
  local head, first, bytes = meta(k)
  local first0 = first
  -- Trim from the oldest message; stop at the first that may stay.
  while first <= head do
    local f = read_message(k, first)
    if not f then return {'corrupt', 'offset ' .. first .. ' is not in the stream'} end
    local age = now - tonumber(f['at'])
    if age < 0 then age = 0 end
    if not (head - first + 1 > max_messages or bytes > max_bytes or age > max_age) then break end
    bytes = bytes - #f['data'] - bin_bytes(f['bin'])
    first = first + 1
  end
  if first ~= first0 then
    redis.call('XTRIM', k.log, 'MINID', sid(first))
    redis.call('HSET', k.meta, 'first', first, 'bytes', bytes)
  end

  local gaps = {}
  local cur = cursors(k)
  for _, s in ipairs(redis.call('SMEMBERS', k.subs)) do
    local sk = sub_keys(k, s)
    local lost = {}
    for _, o in ipairs(redis.call('ZRANGE', sk.due, 0, -1)) do
      if tonumber(o) < first then table.insert(lost, o) end
    end
    table.sort(lost, numeric)
    local runs = {}
    local function push(from, to)
      local last = runs[#runs]
      if last and last[2] + 1 == from then last[2] = to else table.insert(runs, {from, to}) end
    end
    for _, o in ipairs(lost) do
      settle(k, sk, s, o)
      push(tonumber(o), tonumber(o))
    end
    local cursor = cur[s]
    if cursor < first then
      push(cursor, first - 1)
      redis.call('XGROUP', 'SETID', k.log, s, sid(first - 1))
    end
    local n = 0
    for _, r in ipairs(runs) do
      n = n + r[2] - r[1] + 1
      table.insert(gaps, {s, r[1], r[2]})
    end
    if n > 0 then redis.call('HINCRBY', k.gaps, s, n) end
  end

  if key_before ~= '' then
    local old = redis.call('ZRANGEBYSCORE', k.keyat, '-inf', '(' .. key_before)
    -- In batches: unpack is bounded by the Lua stack.
    for i = 1, #old, 500 do
      local batch = {unpack(old, i, math.min(i + 499, #old))}
      redis.call('HDEL', k.keys, unpack(batch))
      redis.call('ZREM', k.keyat, unpack(batch))
    end
  end
  return {'ok', gaps}
end

-- The operations that read ARGV themselves (their batches may be longer than unpack allows).
local RAW = {append_batch = true, settle = true, settle_claim = true}

local f = ops[OP]
if not f then return redis.error_reply('tidings: unknown store operation ' .. tostring(OP)) end
if RAW[OP] then return f(ARGV) end
return f(unpack(ARGV, 3))
