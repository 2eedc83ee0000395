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
--   B..':s:'..S..':wait'    ZSET waiting offset, score not_before (requeued, released, or
--                            back from the dead letters); members are also in the PEL
--   B..':s:'..S..':runs'     ZSET deliveries in flight: member '<from> <to> <count>' (the
--                            offsets from..to handed out by one claim, each then delivered
--                            `count` times), score their ack deadline
--   B..':s:'..S..':dead'     HASH offset -> '<attempts> <dead_at> <published_at> <id> <#event> <event><data>'
--                            or, with attachments, '... <#event>:<#data> <event><data><bin>'
--   B..':s:'..S..':members'  SET identities (group subscriptions)
--
-- The pending entries of a subscription are its group's PEL, and an entry's attempt count is
-- the PEL's delivery counter (XREADGROUP sets it to 1, a redelivery's XCLAIM to the attempt,
-- requeue_dead's to 0). An entry is waiting if it is in `wait`; otherwise it is in flight,
-- and its deadline is the score of the run that holds it: the run covering its offset whose
-- count equals its delivery counter (an entry's counter only grows, except at requeue_dead,
-- which splits the runs covering the entry). Runs are dropped lazily: at their deadline, or
-- when a claim finds the earliest one holding no entry still in flight under it. So a claim
-- of new messages writes one run, an ack is one XACK, whatever the window: no per-entry
-- state outside the PEL unless an entry waits.
--
-- Legacy layout (written up to f42b85b, 2026-12-06): ZSET due (every pending entry, score
-- its due time), HASH att (attempt counts), SET flight (in flight). migrate() turns it into
-- the layout above on the first touch of the subscription, in the same script.

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
    wait = k.sub(s, 'wait'), runs = k.sub(s, 'runs'),
    dead = k.sub(s, 'dead'), members = k.sub(s, 'members'),
    -- The legacy layout's keys (see migrate).
    due = k.sub(s, 'due'), att = k.sub(s, 'att'), flight = k.sub(s, 'flight'),
  }
end

-- '%d' rather than tostring: tostring writes 1e+14 for large offsets.
local function sid(offset) return string.format('%d-0', offset) end

local function str(n) return string.format('%d', n) end

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

-- subscription key -> {cursor, pel}: the cursor from the consumer group's last-delivered id,
-- pel the number of entries in its PEL (every pending entry).
local function groups(k)
  local out = {}
  if redis.call('EXISTS', k.log) == 0 then return out end
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', k.log)) do
    local f = fields(g)
    out[f['name']] = {cursor = offset_of(f['last-delivered-id']) + 1, pel = tonumber(f['pending'])}
  end
  return out
end

local function is_sub(k, s) return redis.call('SISMEMBER', k.subs, s) == 1 end

local function by_offset(a, b) return a[1] < b[1] end

-- A run's member: from, to, count.
local function run_of(member)
  local from, to, count = string.match(member, '^(%d+) (%d+) (%d+)$')
  return tonumber(from), tonumber(to), tonumber(count)
end

local function run_member(from, to, count)
  return str(from) .. ' ' .. str(to) .. ' ' .. str(count)
end

-- The PEL entries of `s` with offsets from..to: {{offset, delivery count}...}, at most `count`.
local function pel_range(k, s, from, to, count)
  local out = {}
  for _, p in ipairs(redis.call('XPENDING', k.log, s, sid(from), sid(to), count)) do
    out[#out + 1] = {offset_of(p[1]), tonumber(p[4])}
  end
  return out
end

-- The subset of `offsets` (numbers) that wait (are members of `wait`), as a set.
local function waiting_of(sk, offsets)
  local set = {}
  if #offsets == 0 or redis.call('EXISTS', sk.wait) == 0 then return set end
  local strs = {}
  for i, o in ipairs(offsets) do strs[i] = str(o) end
  for i, score in ipairs(scores_of(sk.wait, strs)) do
    if score then set[offsets[i]] = true end
  end
  return set
end

-- The entries in flight under run (from, to, count): {{offset, count}...}, in offset order;
-- `limit` bounds how many PEL entries are read.
local function run_entries(k, sk, s, from, to, count, limit)
  local cands = {}
  for _, p in ipairs(pel_range(k, s, from, to, limit)) do
    if p[2] == count then cands[#cands + 1] = p[1] end
  end
  local waiting = waiting_of(sk, cands)
  local out = {}
  for _, o in ipairs(cands) do
    if not waiting[o] then out[#out + 1] = {o, count} end
  end
  return out
end

-- Whether any entry is still in flight under the run: the lowest pending entry of its range
-- first (the usual answer), the whole range only when that one is not.
local function run_is_live(k, sk, s, from, to, count)
  local first = pel_range(k, s, from, to, 1)
  if #first == 0 then return false end
  if first[1][2] == count and not waiting_of(sk, {first[1][1]})[first[1][1]] then return true end
  return #run_entries(k, sk, s, from, to, count, to - from + 1) > 0
end

-- Most runs one claim looks at for the next due time; past it, it reports the earliest run's
-- deadline, which may be early (a claim then finds nothing due and looks further).
local MAX_RUN_SCAN = 64

-- The earliest due time of what is pending (false: nothing is), as a string: the earliest
-- run still holding an entry in flight (the runs before it are dropped) or waiting entry.
local function next_due(k, sk, s)
  local run_due = false
  for _ = 1, MAX_RUN_SCAN do
    local first = redis.call('ZRANGE', sk.runs, 0, 0, 'WITHSCORES')
    if #first == 0 then break end
    local from, to, count = run_of(first[1])
    if not from then error('tidings: malformed run ' .. first[1] .. ' in ' .. sk.runs) end
    if run_is_live(k, sk, s, from, to, count) then
      run_due = first[2]
      break
    end
    redis.call('ZREM', sk.runs, first[1])
  end
  if run_due == false then
    -- Nothing live found: none left, or stopped by MAX_RUN_SCAN (then the earliest run left,
    -- possibly early).
    local first = redis.call('ZRANGE', sk.runs, 0, 0, 'WITHSCORES')
    if #first > 0 then run_due = first[2] end
  end
  local w = redis.call('ZRANGE', sk.wait, 0, 0, 'WITHSCORES')
  local wait_due = w[2] or false
  if run_due and wait_due then
    if tonumber(wait_due) < tonumber(run_due) then return wait_due end
    return run_due
  end
  return run_due or wait_due
end

-- Removes every run covering offset `o`, keeping the rest of their ranges (requeue_dead resets
-- the entry's delivery counter, so an older run of the same count must not claim it again).
local function split_runs(sk, o)
  local runs = redis.call('ZRANGE', sk.runs, 0, -1, 'WITHSCORES')
  for i = 1, #runs, 2 do
    local from, to, count = run_of(runs[i])
    if from and from <= o and o <= to then
      redis.call('ZREM', sk.runs, runs[i])
      if from < o then redis.call('ZADD', sk.runs, runs[i + 1], run_member(from, o - 1, count)) end
      if o < to then redis.call('ZADD', sk.runs, runs[i + 1], run_member(o + 1, to, count)) end
    end
  end
end

-- Turns a subscription kept in the legacy layout (due, att, flight; see the top of the file)
-- into the current one: an entry in flight becomes a run of its own, due at its deadline, a
-- waiting one a member of `wait`; the PEL's delivery counter is set to the attempt count (the
-- legacy scripts kept them equal; XCLAIM also drops an entry no longer in the PEL). One EXISTS
-- when there is nothing to migrate.
local function migrate(k, sk, s)
  if redis.call('EXISTS', sk.due, sk.att, sk.flight) == 0 then return end
  local flight = {}
  for _, o in ipairs(redis.call('SMEMBERS', sk.flight)) do flight[tonumber(o)] = true end
  local att = fields(redis.call('HGETALL', sk.att))
  local due = redis.call('ZRANGE', sk.due, 0, -1, 'WITHSCORES')
  for i = 1, #due, 2 do
    local o, at = tonumber(due[i]), due[i + 1]
    local n = tonumber(att[due[i]] or 0) or 0
    local r = redis.call('XCLAIM', k.log, s, CONSUMER, 0, sid(o), 'RETRYCOUNT', n, 'JUSTID')
    if #r > 0 then
      if flight[o] then
        redis.call('ZADD', sk.runs, at, run_member(o, o, n))
      else
        redis.call('ZADD', sk.wait, at, str(o))
      end
    end
  end
  redis.call('DEL', sk.due, sk.att, sk.flight)
end

-- The keys of subscription `s`, its state migrated if it was in the legacy layout.
local function sub_state(k, s)
  local sk = sub_keys(k, s)
  migrate(k, sk, s)
  return sk
end

local function sub_info(k, s, head, g)
  local sk = sub_state(k, s)
  local waiting = redis.call('ZCARD', sk.wait)
  return {s, g.pel + (head + 1 - g.cursor), g.pel - waiting, redis.call('HLEN', sk.dead),
    tonumber(redis.call('HGET', k.gaps, s) or 0), g.cursor}
end

-- Settles pending entries (`offsets`: decimal strings): out of the group's PEL and of `wait`.
local function settle_strs(k, sk, s, offsets)
  if #offsets == 0 then return end
  local ids = {}
  for i, o in ipairs(offsets) do ids[i] = o .. '-0' end
  variadic({'XACK', k.log, s}, ids)
  if redis.call('EXISTS', sk.wait) == 1 then variadic({'ZREM', sk.wait}, offsets) end
end

-- settle_strs of offsets given as numbers.
local function settle_all(k, sk, s, offsets)
  local strs = {}
  for i, o in ipairs(offsets) do strs[i] = str(o) end
  settle_strs(k, sk, s, strs)
end

local function bury(sk, o, f, attempts, now)
  local ev = f['ev']
  local head = str(attempts) .. ' ' .. now .. ' ' .. f['at'] .. ' ' .. f['id'] .. ' ' .. #ev
  if f['bin'] then
    redis.call('HSET', sk.dead, str(o),
      head .. ':' .. #f['data'] .. ' ' .. ev .. f['data'] .. f['bin'])
  else
    redis.call('HSET', sk.dead, str(o), head .. ' ' .. ev .. f['data'])
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
  local g = groups(k)
  local subs = redis.call('SMEMBERS', k.subs)
  table.sort(subs)
  local out = {}
  for _, s in ipairs(subs) do
    table.insert(out, {s, g[s].pel + (head + 1 - g[s].cursor), g[s].cursor, g[s].pel})
  end
  return out
end

-- Appends ascending runs of offsets: push(runs, from, to) merges with the last if adjacent.
local function push_run(runs, from, to)
  local last = runs[#runs]
  if last and last[2] + 1 == from then last[2] = to else table.insert(runs, {from, to}) end
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
  return (string.gsub(text, '\n', ' '))
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

-- One message of append_batch into topic state `t` (its keys, head and bytes so far); returns
-- its line of the reply.
local function append_one(t, id, ev, data, at, key, window, bin)
  local dup = duplicate(t.k, key, at, window)
  if dup then return dup[2] .. ' ' .. dup[3] .. ' 1' end
  local off = t.head + 1
  local entry = sid(off)
  if bin ~= '' then
    redis.call('XADD', t.k.log, entry, 'id', id, 'ev', ev, 'data', data, 'at', at, 'bin', bin)
  else
    redis.call('XADD', t.k.log, entry, 'id', id, 'ev', ev, 'data', data, 'at', at)
  end
  t.head = off
  t.bytes = t.bytes + #data + bin_bytes(bin)
  if key ~= '' then
    redis.call('HSET', t.k.keys, key, str(off) .. ' ' .. id .. ' ' .. at)
    redis.call('ZADD', t.k.keyat, at, key)
  end
  -- The stream id as the offset: formatting the number again would cost a sprintf.
  return entry .. ' ' .. id .. ' 0'
end

-- Many appends, of any topics, in one script (the store's group commit): ARGV[4..] holds
-- APPEND_FIELDS values per message. The messages of a topic get consecutive offsets in the
-- order given; a key repeated within the batch is a duplicate of its first message. Per
-- topic, once: the topic is created if new and its head read; at the end its head and bytes
-- move by what was appended. Per message: one XADD (plus the key's HSET and ZADD). Replies
-- {'ok', lines}: one line per message, '<offset>[-0] <id> <duplicate>', or '!<reason>' (a key of
-- that topic has the wrong type; the other topics' messages are not affected) — one string
-- rather than an array per message, which costs Redis and the reply parser less.
function ops.append_batch(args)
  local topics, order, out = {}, {}, {}
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
      out[#out + 1] = '!' .. t.err
    else
      local ok, r = pcall(append_one, t, args[i + 1], args[i + 2], args[i + 3], args[i + 4],
        args[i + 5], args[i + 6], args[i + 7])
      if ok then
        out[#out + 1] = r
      else
        out[#out + 1] = '!' .. only_wrongtype(r)
      end
    end
  end
  for _, name in ipairs(order) do
    local t = topics[name]
    if not t.err and t.head ~= t.head0 then
      redis.call('HINCRBY', t.k.meta, 'head', t.head - t.head0)
      redis.call('HINCRBY', t.k.meta, 'bytes', t.bytes)
    end
  end
  return {'ok', table.concat(out, '\n')}
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
      local s, excess, cursor, pel = d[1], d[2] - max, d[3], d[4]
      if excess > 0 then
        local sk = sub_state(k, s)
        -- Pending entries are all below the cursor: they are the oldest. The PEL is in
        -- offset order.
        local runs, lost = {}, {}
        if pel > 0 then
          for _, p in ipairs(redis.call('XPENDING', k.log, s, '-', '+', math.min(excess, pel))) do
            local o = offset_of(p[1])
            lost[#lost + 1] = o
            push_run(runs, o, o)
          end
        end
        settle_all(k, sk, s, lost)
        local skip = excess - #lost
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
    return {'ok', sub_info(k, s, head, groups(k)[s])}
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
  return {'ok', sub_info(k, s, head, {cursor = cursor, pel = 0})}
end

function ops.unsubscribe(topic, s)
  local k = K(topic)
  if not (exists(k) and is_sub(k, s)) then return {'ok', 0} end
  local sk = sub_keys(k, s)
  redis.call('XGROUP', 'DESTROY', k.log, s)
  redis.call('DEL', sk.wait, sk.runs, sk.dead, sk.members, sk.due, sk.att, sk.flight)
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

-- A claimed message as the reply carries it, appended to `out`: a head
-- '<offset>[-0] <attempt> <id> <published_at> <has bin: 0|1> <event>', then the data, then the
-- `bin` field if it has one. The data is the very string the stream read returned (a new
-- string costs Redis's Lua a hash over every byte); the head is built by concatenation only
-- (a number formatted costs a sprintf), so new messages pass their stream id as the offset.
local function push_claimed(out, offset, attempt, id, at, ev, data, bin)
  out[#out + 1] = offset .. ' ' .. attempt .. ' ' .. id .. ' ' .. at ..
    (bin and ' 1 ' or ' 0 ') .. ev
  out[#out + 1] = data
  if bin then out[#out + 1] = bin end
end

-- push_claimed of a stream entry's fields `raw`: read in place when they are in the order
-- append writes them (id, ev, data, at[, bin]), without a table per entry.
local function push_entry(out, offset, attempt, raw)
  if raw[1] == 'id' and raw[3] == 'ev' and raw[5] == 'data' and raw[7] == 'at' and
    (raw[9] == nil or raw[9] == 'bin') then
    push_claimed(out, offset, attempt, raw[2], raw[8], raw[4], raw[6], raw[10])
  else
    local f = fields(raw)
    push_claimed(out, offset, attempt, f['id'], f['at'], f['ev'], f['data'], f['bin'])
  end
end

-- Hands out up to `max` entries of subscription `s` (see Store::claim). The due entries
-- first, in offset order: those in flight under a run past its deadline, and those waiting
-- until now or earlier; each is read, dead-lettered or redelivered on its own (XCLAIM sets the
-- PEL's delivery counter to the new attempt) and gets a run of its own — redeliveries are
-- rare. A due entry not handed out (max reached) stays as it was: in flight under a run of its
-- own with the old deadline, or waiting. Then new messages with one XREADGROUP (which makes
-- their PEL entries, delivery counter 1) and one run for all of them. Replies {'ok', claimed,
-- dead, first due time or false}, claimed as push_claimed writes it.
local function claim(k, sk, s, now_s, max_s, deadline, maxdel_s)
  local max, maxdel = tonumber(max_s), tonumber(maxdel_s)
  local claimed, dead, n_claimed = {}, {}, 0

  -- {offset, delivery count or false (waiting: read from the PEL), deadline of its run}
  local due = {}
  local expired = redis.call('ZRANGEBYSCORE', sk.runs, '-inf', now_s, 'WITHSCORES')
  local expired_runs = {}
  for i = 1, #expired, 2 do
    local from, to, count = run_of(expired[i])
    if not from then error('tidings: malformed run ' .. expired[i] .. ' in ' .. sk.runs) end
    for _, e in ipairs(run_entries(k, sk, s, from, to, count, to - from + 1)) do
      due[#due + 1] = {e[1], count, expired[i + 1]}
    end
    expired_runs[#expired_runs + 1] = expired[i]
  end
  if redis.call('EXISTS', sk.wait) == 1 then
    for _, o in ipairs(redis.call('ZRANGEBYSCORE', sk.wait, '-inf', now_s)) do
      due[#due + 1] = {tonumber(o), false}
    end
  end
  table.sort(due, by_offset)

  -- What to do with each due entry, decided with reads only: a message missing from the
  -- stream fails the claim before anything is written.
  local runs, unwait, settled, burials, redelivered = {}, {}, {}, {}, {}
  for _, d in ipairs(due) do
    local o, count = d[1], d[2]
    if n_claimed >= max then
      -- Not handed out: an entry of an expired run keeps its deadline in a run of its own.
      if count then
        runs[#runs + 1] = d[3]
        runs[#runs + 1] = run_member(o, o, count)
      end
    else
      if not count then
        local p = pel_range(k, s, o, o, 1)
        if #p == 0 then
          -- Waiting but no longer pending (settled outside these scripts): nothing to hand out.
          unwait[#unwait + 1] = str(o)
        else
          count = p[1][2]
        end
      end
      if count then
        local f = read_message(k, o)
        if not f then
          return {'corrupt', 'offset ' .. o .. ' is pending for ' .. s .. ' but not retained'}
        end
        if count >= maxdel then
          settled[#settled + 1] = o
          burials[#burials + 1] = {o, f, count}
          table.insert(dead, o)
        else
          local attempt = count + 1
          redelivered[#redelivered + 1] = {o, attempt}
          if not d[3] then unwait[#unwait + 1] = str(o) end
          runs[#runs + 1] = deadline
          runs[#runs + 1] = run_member(o, o, attempt)
          push_claimed(claimed, str(o), str(attempt), f['id'], f['at'], f['ev'], f['data'],
            f['bin'])
          n_claimed = n_claimed + 1
        end
      end
    end
  end
  variadic({'ZREM', sk.runs}, expired_runs)
  for _, b in ipairs(burials) do bury(sk, b[1], b[2], b[3], now_s) end
  for _, r in ipairs(redelivered) do
    -- The PEL's delivery counter is the attempt count.
    redis.call('XCLAIM', k.log, s, CONSUMER, 0, sid(r[1]), 'RETRYCOUNT', r[2], 'JUSTID')
  end
  settle_all(k, sk, s, settled)
  variadic({'ZREM', sk.wait}, unwait)

  local want = max - n_claimed
  local count = want
  if want > 0 and (maxdel == 0 or want > 1e9) then
    -- Never more than what is there: COUNT must stay an integer Redis can parse (a Lua
    -- number that large would be written in exponent form). With no deliveries allowed,
    -- everything left goes to the dead letters.
    local head = meta(k)
    local cursor = groups(k)[s].cursor
    count = math.max(0, head - cursor + 1)
    if maxdel ~= 0 then count = math.min(want, count) end
  end
  if count > 0 then
    local r = redis.call('XREADGROUP', 'GROUP', s, CONSUMER, 'COUNT', count, 'STREAMS', k.log, '>')
    if r then
      local entries = r[1][2]
      if maxdel == 0 then
        for _, e in ipairs(entries) do
          local o = offset_of(e[1])
          redis.call('XACK', k.log, s, e[1])
          bury(sk, o, fields(e[2]), 0, now_s)
          table.insert(dead, o)
        end
      elseif #entries > 0 then
        for _, e in ipairs(entries) do push_entry(claimed, e[1], '1', e[2]) end
        n_claimed = n_claimed + #entries
        -- New messages follow the cursor: their offsets are consecutive.
        runs[#runs + 1] = deadline
        runs[#runs + 1] = run_member(offset_of(entries[1][1]), offset_of(entries[#entries][1]), 1)
      end
    end
  end
  variadic({'ZADD', sk.runs}, runs)
  return {'ok', claimed, dead, next_due(k, sk, s)}
end

-- topic, sub, now, max, deadline (now + ack_timeout), max_deliveries
function ops.claim(topic, s, now_s, max_s, deadline, maxdel_s)
  local k = K(topic)
  if not is_sub(k, s) then return {'notfound', 'no such subscription'} end
  return claim(k, sub_state(k, s), s, now_s, max_s, deadline, maxdel_s)
end

-- Which of `offsets` (numbers) are pending (in the group's PEL), as a set of stream ids
-- ('<offset>-0'): one XPENDING per cluster of nearby offsets (at most PEL_GAP apart), which
-- returns the PEL entries of its range.
local PEL_GAP = 16
-- Offsets from 2^53 on are never pending (no head gets there) and not exact as Lua numbers.
local MAX_OFFSET = 9007199254740992
local function pending_of(k, s, offsets)
  local sorted = {}
  for _, o in ipairs(offsets) do
    if o >= 1 and o < MAX_OFFSET then sorted[#sorted + 1] = o end
  end
  table.sort(sorted)
  local set = {}
  local i = 1
  while i <= #sorted do
    local j = i
    while j < #sorted and sorted[j + 1] - sorted[j] <= PEL_GAP do j = j + 1 end
    local r = redis.call('XPENDING', k.log, s, sid(sorted[i]), sid(sorted[j]),
      sorted[j] - sorted[i] + 1)
    for _, p in ipairs(r) do set[p[1]] = true end
    i = j + 1
  end
  return set
end

-- Applies ARGV[from..] as (kind, offset, not_before) triples of subscription `s`, in order:
-- 'a' acks, 'r' requeues until not_before. Returns one flag per entry (1: it was pending), as
-- ack and requeue one by one would, as a string of '0' and '1'; the last answer of an offset
-- wins, and nothing follows an ack. An ack is an XACK of its own, whose answer (1 or 0) is
-- its flag: measured cheaper than reading the batch's PEL range into Lua first (BENCHMARKS.md).
-- Only offsets whose first answer is a requeue are checked with pending_of; the requeues
-- that stand are then one ZADD to `wait`, and the acks leave `wait` with one ZREM (if it
-- exists). The runs are left alone: an acked entry is no longer pending, a requeued one
-- waits, and neither is in flight under its run any more. Offsets stay the strings Rust sent
-- (decimal, canonical): formatting numbers costs Redis's Lua a sprintf each.
local function settle_batch(k, sk, s, args, from)
  local first_kind, requeue_first = {}, {}
  for i = from, #args, 3 do
    local o = args[i + 1]
    if first_kind[o] == nil then
      first_kind[o] = args[i]
      if args[i] ~= 'a' then requeue_first[#requeue_first + 1] = tonumber(o) or -1 end
    end
  end
  local pel = pending_of(k, s, requeue_first)
  local pending, requeue_at, flags = {}, {}, {}
  local acked, requeued = {}, {}
  local n = 0
  for i = from, #args, 3 do
    n = n + 1
    local kind, o = args[i], args[i + 1]
    local is_pending = pending[o]
    if is_pending == nil then is_pending = kind == 'a' or pel[o .. '-0'] == true end
    if kind == 'a' then
      -- An offset first answered by this ack learns here whether it was pending.
      if is_pending and redis.call('XACK', k.log, s, o .. '-0') == 1 then
        flags[n] = '1'
        acked[#acked + 1] = o
      else
        flags[n] = '0'
      end
      pending[o] = false
      requeue_at[o] = nil
    else
      if is_pending then
        flags[n] = '1'
        if requeue_at[o] == nil then requeued[#requeued + 1] = o end
        requeue_at[o] = args[i + 2]
      else
        flags[n] = '0'
      end
      pending[o] = is_pending
    end
  end
  if #acked > 0 and redis.call('EXISTS', sk.wait) == 1 then variadic({'ZREM', sk.wait}, acked) end
  local wait_at = {}
  for _, o in ipairs(requeued) do
    if requeue_at[o] ~= nil then
      wait_at[#wait_at + 1] = requeue_at[o]
      wait_at[#wait_at + 1] = o
    end
  end
  variadic({'ZADD', sk.wait}, wait_at)
  return table.concat(flags)
end

-- sub, offset: one ack.
function ops.ack(topic, s, o)
  local k = K(topic)
  if not (exists(k) and is_sub(k, s)) then return {'notfound', 'no such subscription'} end
  return {'ok', settle_batch(k, sub_state(k, s), s, {'a', o, '0'}, 1)}
end

-- sub, offset, not_before: one requeue.
function ops.requeue(topic, s, o, not_before)
  local k = K(topic)
  if not (exists(k) and is_sub(k, s)) then return {'notfound', 'no such subscription'} end
  return {'ok', settle_batch(k, sub_state(k, s), s, {'r', o, not_before}, 1)}
end

-- sub, then (kind, offset, not_before) per entry (ARGV[5..]): see settle_batch. Replies
-- {'ok', flags}.
function ops.settle(args)
  local k, s = K(args[3]), args[4]
  if not is_sub(k, s) then return {'notfound', 'no such subscription'} end
  return {'ok', settle_batch(k, sub_state(k, s), s, args, 5)}
end

-- sub, now, max, deadline, max_deliveries, then (kind, offset, not_before) per entry
-- (ARGV[9..]): the settle of a dispatcher's answered deliveries and its next claim in one
-- script. Replies {'ok', flags, claimed, dead, first due time or false}.
function ops.settle_claim(args)
  local k, s = K(args[3]), args[4]
  if not is_sub(k, s) then return {'notfound', 'no such subscription'} end
  local sk = sub_state(k, s)
  local flags = settle_batch(k, sk, s, args, 9)
  local r = claim(k, sk, s, args[5], args[6], args[7], args[8])
  if r[1] ~= 'ok' then return r end
  return {'ok', flags, r[2], r[3], r[4]}
end

-- (no topic), now: every in-flight entry of every subscription waits until now.
function ops.release_in_flight(_, now)
  local released = 0
  for _, t in ipairs(redis.call('SMEMBERS', P .. 'topics')) do
    local k = K(t)
    local g = groups(k)
    for _, s in ipairs(redis.call('SMEMBERS', k.subs)) do
      local sk = sub_state(k, s)
      if g[s] and g[s].pel > 0 then
        local offsets = {}
        for _, p in ipairs(redis.call('XPENDING', k.log, s, '-', '+', g[s].pel)) do
          offsets[#offsets + 1] = offset_of(p[1])
        end
        local waiting = waiting_of(sk, offsets)
        local wait_at = {}
        for _, o in ipairs(offsets) do
          if not waiting[o] then
            wait_at[#wait_at + 1] = now
            wait_at[#wait_at + 1] = str(o)
          end
        end
        variadic({'ZADD', sk.wait}, wait_at)
        released = released + #wait_at / 2
      end
      redis.call('DEL', sk.runs)
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
    local sk = sub_state(k, s)
    local d = redis.call('HGETALL', sk.dead)
    for i = 1, #d, 2 do
      local o = tonumber(d[i])
      local dead_id = string.match(d[i + 1], '^%S+ %S+ %S+ (%S+) ')
      if dead_id == id and o >= first then
        redis.call('HDEL', sk.dead, d[i])
        -- Back into the group's PEL, with no delivery made, waiting until now.
        redis.call('XCLAIM', k.log, s, CONSUMER, 0, sid(o), 'RETRYCOUNT', 0, 'FORCE', 'JUSTID')
        redis.call('ZADD', sk.wait, now, str(o))
        split_runs(sk, o)
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
  local g = groups(k)
  local subs = {}
  for _, s in ipairs(redis.call('SMEMBERS', k.subs)) do
    table.insert(subs, sub_info(k, s, head, g[s]))
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
  local g = groups(k)
  for _, s in ipairs(redis.call('SMEMBERS', k.subs)) do
    local offset = nil
    local p = redis.call('XPENDING', k.log, s)
    if tonumber(p[1]) > 0 then
      offset = offset_of(p[2])
    elseif g[s] and g[s].cursor <= head then
      offset = math.max(g[s].cursor, first)
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
  local g = groups(k)
  for _, s in ipairs(redis.call('SMEMBERS', k.subs)) do
    local sk = sub_state(k, s)
    -- The pending entries below `first` lost their messages: the head of the PEL.
    local lost, runs = {}, {}
    if g[s].pel > 0 and first > 1 then
      for _, p in ipairs(redis.call('XPENDING', k.log, s, '-', sid(first - 1), g[s].pel)) do
        local o = offset_of(p[1])
        lost[#lost + 1] = o
        push_run(runs, o, o)
      end
    end
    settle_all(k, sk, s, lost)
    local cursor = g[s].cursor
    if cursor < first then
      push_run(runs, cursor, first - 1)
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
