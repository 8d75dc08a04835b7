package redisstore

import (
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/taskstatus/taskstatus/store"
)

// The scripts below are the only commands that change a task. Each runs
// atomically on the server in one round trip (EVALSHA, falling back to EVAL
// once per server when the script is not cached). They report a refused write
// with an error reply whose first word the package maps to a sentinel error:
// CONFLICT to store.ErrConflict and CORRUPT to store.ErrCorrupt.

// putScript applies a store.Write: if the stored task is the one the write
// was computed from, it writes the new state, sets or clears the expiry,
// and publishes the change unless the write is quiet.
//
// A write is recognised as a resend, and changes nothing, if its write id
// is among the task's latest ones, kept in the writes field: go-redis
// resends a command whose reply it lost (a dropped connection), and so
// does the tracker, and the resend must not turn a write that was applied
// into a conflict with itself, however many writes came in between.
//
// It keeps the shard's indexes (index.go) in step: it moves the task's
// index entry to the index of its new status when the status or the entry
// changed, and then takes out of the indexes up to 4 entries of the
// shard's tasks that expired, so that the indexes hold live tasks only
// however few listings are made; it files the entry in the expiry index by
// when the task expires (by the server's clock), unless it is filed
// earlier already (ZADD LT: a write that only moves the expiry later costs
// no change of the sorted set), or takes it out for a task without a time
// to live. A write that leaves the entry where it was and the task's
// expiry no earlier than it was (its time to live is at least what the
// task had left) does not look at the expiry index at all: the entry is
// filed no later than the expiry it had, which every write keeps true.
// That saves a TIME and a ZADD on most writes, a tenth of the script's
// cost: 13.1 µs against 14.7 µs a write, EVALSHA's usec_per_call in
// commandstats over 3 rounds of 20,000 writes of a running 5-step task.
// A write that leaves the index field as it was (most: progress, steps,
// results) does not take the stored one apart: 11.9 µs against 13.4 µs,
// measured the same way.
//
// A write in the compact form (a task that ended, with WithCompactEnded;
// see Stored form in the package doc), or onto a task kept in it, deletes
// the hash and writes it anew: HSET never takes out a field, and Redis
// never turns a hash back into a listpack once a long value made it a
// hash table. Such a write splits the write ids into two fields of four,
// and reads them back together; the status field, which only the compact
// form has, tells the form stored.
//
// The write ids are looked for only when the write does not apply: a
// resend of a write that was applied finds another version, or another
// incarnation, stored. A quiet write leaves the announced version as it
// was (HSETNX sets it for a hash of an earlier release).
//
// The script costs Redis about 1.7 times the CPU of the earlier release's:
// 7.6 µs against 4.6 µs a write of a 1 KB state, timed in a Lua loop of
// 40,000 writes on the server. It reads and writes the incarnation, the
// write ids and the announced version besides the version and the state;
// keeping the write ids is most of the difference.
//
// KEYS[1] -> the task's hash
// KEYS[2] -> the shard's expiry index
// ARGV[1] -> the version the write was computed from; 0: no task
// ARGV[2] -> the new version
// ARGV[3] -> the incarnation, which a stored task must have unless ARGV[1] is 0
// ARGV[4] -> the state's JSON; "" for the compact form, in ARGV[15..]
// ARGV[5] -> time to live in milliseconds; "0" for none
// ARGV[6] -> the write's id, as writeToken gives it; "" for none
// ARGV[7] -> how many write ids to keep
// ARGV[8] -> the change notification to publish; "" for a quiet write
// ARGV[9] -> <prefix>{<id>}:events, the channel of the task's changes
// ARGV[10] -> the shard's index prefix
// ARGV[11] -> the index field (indexField)
// ARGV[12] -> the index entry
// ARGV[13] -> the status
// ARGV[14] -> the prefix of the shard's task keys
// ARGV[15..] -> the compact form's fields and values, in turn (compactFields)
//
// Returns "OK", or an error reply "CONFLICT <what is stored>" or
// "CORRUPT <reason>" (such as a key that is not a hash).
var putScript = redis.NewScript(luaExpire + `
local stored = redis.pcall('HMGET', KEYS[1], 'version', 'inc', 'writes', 'index', 'writes2', 'announced', 'status')
if stored.err then
	return redis.error_reply('CORRUPT ' .. stored.err)
end
local version, inc, writes, id = stored[1], stored[2] or '', stored[3] or '', ARGV[6]
if stored[5] and stored[5] ~= '' then
	writes = writes == '' and stored[5] or writes .. ' ' .. stored[5]
end
if version then
	version = tonumber(version)
	if not version then
		return redis.error_reply('CORRUPT version field is not a number')
	end
elseif redis.call('EXISTS', KEYS[1]) == 1 then
	return redis.error_reply('CORRUPT hash has no version field')
else
	version = 0
end
if version ~= tonumber(ARGV[1]) or (version > 0 and inc ~= ARGV[3]) then
	if id ~= '' and string.find(' ' .. writes .. ' ', ' ' .. id .. ' ', 1, true) then
		return redis.status_reply('OK')
	end
	if version ~= tonumber(ARGV[1]) then
		return redis.error_reply('CONFLICT stored version is ' .. version)
	end
	return redis.error_reply(string.format('CONFLICT stored incarnation is %q', inc))
end
if id ~= '' then
	if writes == '' then
		writes = id
	else
		writes = id .. ' ' .. writes
		local at = 0
		for _ = 1, tonumber(ARGV[7]) do
			at = string.find(writes, ' ', at + 1, true)
			if not at then
				break
			end
		end
		if at then
			writes = string.sub(writes, 1, at - 1)
		end
	end
end
local idx, entry, status = ARGV[10], ARGV[12], ARGV[13]
local compact = ARGV[4] == ''
if compact or stored[7] then -- the form changes, or a compact hash is written again: whole
	local announced = ARGV[2]
	if ARGV[8] == '' then
		announced = stored[6] or stored[1] or '0'
	end
	local f = {'version', ARGV[2], 'inc', ARGV[3], 'index', ARGV[11], 'announced', announced}
	if compact then
		local at, first, rest = 0, writes, nil
		for _ = 1, 4 do
			at = at and string.find(writes, ' ', at + 1, true)
		end
		if at then
			first, rest = string.sub(writes, 1, at - 1), string.sub(writes, at + 1)
		end
		table.insert(f, 'writes')
		table.insert(f, first)
		if rest then
			table.insert(f, 'writes2')
			table.insert(f, rest)
		end
		for i = 15, #ARGV do
			table.insert(f, ARGV[i])
		end
	else
		table.insert(f, 'writes')
		table.insert(f, writes)
		table.insert(f, 'state')
		table.insert(f, ARGV[4])
	end
	redis.call('DEL', KEYS[1])
	redis.call('HSET', KEYS[1], unpack(f))
elseif ARGV[8] ~= '' then
	redis.call('HSET', KEYS[1], 'version', ARGV[2], 'inc', ARGV[3], 'state', ARGV[4], 'writes', writes,
		'index', ARGV[11], 'announced', ARGV[2])
else
	redis.call('HSET', KEYS[1], 'version', ARGV[2], 'inc', ARGV[3], 'state', ARGV[4], 'writes', writes, 'index', ARGV[11])
	redis.call('HSETNX', KEYS[1], 'announced', stored[1] or '0')
end
if ARGV[8] ~= '' then
	redis.call('PUBLISH', ARGV[9], ARGV[8])
end
local _, _, kind, _, labels = unindex(ARGV[11])
local moved = false -- the task's entry moved to another index, or is new
local now -- the server's time, read once if needed
if stored[4] ~= ARGV[11] then -- else nothing the indexes hold changed
	local was, created, wkind, _, wlabels = unindex(stored[4])
	local old = created and created .. string.sub(entry, 9)
	local counts = idx .. 'counts'
	moved = was ~= status or old ~= entry
	if moved then
		if old then
			if redis.call('ZREM', idx .. was, old) == 1 then
				tally(counts, counted(was, wkind, wlabels), -1)
			end
			if old ~= entry then
				redis.call('ZREM', KEYS[2], old .. '\n' .. wkind .. '\n' .. wlabels)
			end
		else -- a new task, or one the store lost: an entry left of it goes
			for _, s in ipairs(statuses) do
				if s ~= status and redis.call('ZREM', idx .. s, entry) == 1 then
					tally(counts, counted(s, kind, labels), -1)
				end
			end
		end
		if redis.call('ZADD', idx .. status, 0, entry) == 1 then
			tally(counts, counted(status, kind, labels), 1)
		end
		now = serverMillis()
		expire(KEYS[2], idx, ARGV[14], now, 4)
	end
end
local member = entry .. '\n' .. kind .. '\n' .. labels
if ARGV[5] == '0' then
	redis.call('PERSIST', KEYS[1])
	redis.call('ZREM', KEYS[2], member)
else
	local ttl, filed = tonumber(ARGV[5]), false -- filed: no later than the new expiry already
	if not moved then
		local left = redis.call('PTTL', KEYS[1])
		filed = left >= 0 and left <= ttl
	end
	if not filed then
		redis.call('ZADD', KEYS[2], 'LT', (now or serverMillis()) + ttl, member)
	end
	redis.call('PEXPIRE', KEYS[1], ARGV[5])
end
return redis.status_reply('OK')
`)

// deleteScript removes a task and its index entry and, if it existed,
// publishes the deletion so that watchers learn the task is gone.
//
// KEYS[1] -> the task's hash
// KEYS[2] -> the shard's expiry index
// ARGV[1] -> the deletion notification to publish
// ARGV[2] -> <prefix>{<id>}:events, the channel of the task's changes
// ARGV[3] -> the shard's index prefix
// ARGV[4] -> the task's id
//
// Returns "OK".
var deleteScript = redis.NewScript(luaExpire + `
local stored = redis.pcall('HGET', KEYS[1], 'index')
if type(stored) == 'string' then
	local status, created, kind, _, labels = unindex(stored)
	if status then
		local entry = created .. ARGV[4]
		if redis.call('ZREM', ARGV[3] .. status, entry) == 1 then
			tally(ARGV[3] .. 'counts', counted(status, kind, labels), -1)
		end
		redis.call('ZREM', KEYS[2], entry .. '\n' .. kind .. '\n' .. labels)
	end
end
if redis.call('DEL', KEYS[1]) == 1 then
	redis.call('PUBLISH', ARGV[2], ARGV[1])
end
return redis.status_reply('OK')
`)

// luaExpire defines, for the scripts that start with it, serverMillis,
// the server's time in milliseconds; unindex(v), which returns the
// status, creation time (as in an index entry), kind, lease and labels
// of index field v, nothing for a field that is not one; and
// counted(status, kind, labels), the counters a task of that status, kind
// and labels counts in: "<status>\nk\n<kind>", and for each label
// "<status>\nl\n<key>=<value>" and "<status>\nkl\n<kind>\n<key>=<value>",
// fields of the shard's hash "<index prefix>counts", which tally(counts,
// fields, delta) changes (deleting a field that comes to 0), so that a
// count by kind or label reads one field instead of every task; the
// scripts tally a task exactly when its entry enters or leaves a status
// index. And expire(exp, idx, tasks, now, limit), which looks at up to
// limit members the expiry index exp files before now, given the shard's
// index prefix and task key prefix, and returns how many it looked at. A
// member is a task's entry, its kind and its labels, separated by
// newlines, so that the counters of a task gone can be told. An entry
// whose task is gone, or is another task of the same id, is taken out of
// the indexes; one whose task lives on (a write moved its expiry later)
// is filed again by its true expiry, or taken out of the expiry index if
// it has none. An entry is filed before now once its task expired: Redis
// keeps a key until its time is past.
var luaExpire = `
local statuses = {` + luaStatuses() + `}
local function unindex(v)
	if not v then
		return nil
	end
	local a = string.find(v, '\n', 9, true)
	local b = a and string.find(v, '\n', a + 1, true)
	local c = b and string.find(v, '\n', b + 1, true)
	if not c then
		return nil
	end
	return string.sub(v, 9, a - 1), string.sub(v, 1, 8), string.sub(v, a + 1, b - 1), string.sub(v, b + 1, c - 1), string.sub(v, c + 1)
end
local function serverMillis()
	local t = redis.call('TIME')
	return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function counted(status, kind, labels)
	local fields = {}
	if kind ~= '' then
		fields[#fields + 1] = status .. '\nk\n' .. kind
	end
	local at = 2
	while at <= #labels do
		local stop = string.find(labels, '\0', at, true)
		if not stop then
			break
		end
		local label = string.sub(labels, at, stop - 1)
		fields[#fields + 1] = status .. '\nl\n' .. label
		if kind ~= '' then
			fields[#fields + 1] = status .. '\nkl\n' .. kind .. '\n' .. label
		end
		at = stop + 1
	end
	return fields
end
local function tally(counts, fields, delta)
	for _, f in ipairs(fields) do
		if redis.call('HINCRBY', counts, f, delta) == 0 then
			redis.call('HDEL', counts, f)
		end
	end
end
local function expire(exp, idx, tasks, now, limit)
	local due = redis.call('ZRANGEBYSCORE', exp, '-inf', '(' .. now, 'LIMIT', 0, limit)
	for _, m in ipairs(due) do
		local a = string.find(m, '\n', 9, true)
		local b = a and string.find(m, '\n', a + 1, true)
		local ttl = -3 -- not a member of this release: only taken out
		local e, kind, labels
		if b then
			e, kind, labels = string.sub(m, 1, a - 1), string.sub(m, a + 1, b - 1), string.sub(m, b + 1)
			local key = tasks .. string.sub(e, 9)
			local _, created = unindex(redis.call('HGET', key, 'index'))
			ttl = -2
			if created and created == string.sub(e, 1, 8) then
				ttl = redis.call('PTTL', key)
			end
		end
		if ttl > 0 then
			redis.call('ZADD', exp, now + ttl, m)
		else
			redis.call('ZREM', exp, m)
			if ttl == -2 then
				for _, s in ipairs(statuses) do
					if redis.call('ZREM', idx .. s, e) == 1 then
						tally(idx .. 'counts', counted(s, kind, labels), -1)
					end
				end
			end
		end
	end
	return #due
end
`

// luaStatuses returns every status as a list of Lua strings.
func luaStatuses() string {
	var b strings.Builder
	for i, s := range store.Statuses() {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("'" + string(s) + "'")
	}
	return b.String()
}

// listScript finds, in each of a shard's status indexes, up to a number
// of the tasks whose kind, label and lease match a filter, newest first,
// checking them in the tasks' hashes. (A listing by status and creation
// time alone reads the indexes with ZRANGE.)
//
// KEYS[1..] -> the status indexes to read
// ARGV[1] -> the newest entry to find, for ZREVRANGEBYLEX: "+", or "(" and an entry
// ARGV[2] -> the oldest: "-", or "[" and an entry
// ARGV[3] -> how many to find in each index
// ARGV[4] -> the kind; "" for any
// ARGV[5] -> the label's needle (labelNeedle); "" for any
// ARGV[6] -> the lease bound in microseconds, rounded up; "" for any lease
// ARGV[7] -> the prefix of the shard's task keys
//
// Returns a list per status index of the entries found in it.
var listScript = redis.NewScript(luaExpire + `
local n, kind, needle, lease = tonumber(ARGV[3]), ARGV[4], ARGV[5], tonumber(ARGV[6])
local check = kind ~= '' or needle ~= '' or lease ~= nil
local size = n -- of a batch read from an index
if check then
	size = math.max(n, 64) -- fewer calls when few tasks match
end
local function matches(e)
	local status, _, k, l, labels = unindex(redis.call('HGET', ARGV[7] .. string.sub(e, 9), 'index'))
	return status ~= nil and (kind == '' or k == kind)
		and (needle == '' or string.find(labels, needle, 1, true) ~= nil)
		and (lease == nil or (l ~= '' and tonumber(l) < lease))
end
local out = {}
for i = 1, #KEYS do
	local found, max = {}, ARGV[1]
	while #found < n do
		local batch = redis.call('ZREVRANGEBYLEX', KEYS[i], max, ARGV[2], 'LIMIT', 0, size)
		for _, e in ipairs(batch) do
			if not check or matches(e) then
				found[#found + 1] = e
				if #found == n then
					break
				end
			end
		end
		if #batch < size then
			break
		end
		max = '(' .. batch[#batch]
	end
	out[#out + 1] = found
end
return out
`)

// sweepScript takes out of a shard's indexes up to 100 entries of tasks
// that expired, for a listing that found some: writes and counts take them
// out too, and a listing alone does not look for them.
//
// KEYS[1] -> the shard's expiry index
// ARGV[1] -> the shard's index prefix
// ARGV[2] -> the prefix of the shard's task keys
//
// Returns how many entries it looked at.
var sweepScript = redis.NewScript(luaExpire + `
return expire(KEYS[1], ARGV[1], ARGV[2], serverMillis(), 100)
`)

// countScript counts a shard's tasks by status, after taking out of the
// indexes every entry of a task that expired: the size of each status
// index, or, for a kind or a label, the counter the scripts keep of it
// (see luaExpire).
//
// KEYS[1] -> the shard's expiry index
// ARGV[1] -> the kind; "" for any
// ARGV[2] -> the label, "key=value"; "" for any
// ARGV[3] -> the prefix of the shard's task keys
// ARGV[4] -> the shard's index prefix
//
// Returns the count of each status, in the order of store.Statuses.
var countScript = redis.NewScript(luaExpire + `
local now = serverMillis()
while expire(KEYS[1], ARGV[4], ARGV[3], now, 1000) == 1000 do
end
local kind, label = ARGV[1], ARGV[2]
local out = {}
for i, s in ipairs(statuses) do
	if kind == '' and label == '' then
		out[i] = redis.call('ZCARD', ARGV[4] .. s)
	else
		local f = s .. '\nkl\n' .. kind .. '\n' .. label
		if label == '' then
			f = s .. '\nk\n' .. kind
		elseif kind == '' then
			f = s .. '\nl\n' .. label
		end
		out[i] = tonumber(redis.call('HGET', ARGV[4] .. 'counts', f) or '0')
	end
end
return out
`)
