package redisstore

import "github.com/redis/go-redis/v9"

// The scripts below are the only commands that change a task. Each runs
// atomically on the server in one round trip (EVALSHA, falling back to EVAL
// once per server when the script is not cached). They report a refused write
// with an error reply whose first word the package maps to a sentinel error:
// CONFLICT to store.ErrConflict and CORRUPT to store.ErrCorrupt.

// putScript writes a new state of a task if the stored version is the one
// before it, sets or clears the expiry, and publishes the change.
//
// The put_id field makes the write idempotent for one Put call: go-redis
// resends a command whose reply it lost (a dropped connection), and the
// resend must not turn a successful write into a conflict. A resend finds
// its own version and its own put_id stored and reports success again;
// another call writing the same version has a different put_id and gets
// CONFLICT.
//
// KEYS[1] -> <prefix>{<id>}, the task's hash
// ARGV[1] -> the new version; the stored version must be ARGV[1]-1 (0: absent)
// ARGV[2] -> the state's JSON
// ARGV[3] -> time to live in milliseconds; "0" for none
// ARGV[4] -> put_id, a random id of this Put call
// ARGV[5] -> the change notification to publish
// ARGV[6] -> <prefix>{<id>}:events, the channel of the task's changes
//
// Returns "OK", or an error reply "CONFLICT stored version is <n>" or
// "CORRUPT <reason>" (such as a key that is not a hash).
var putScript = redis.NewScript(`
local stored = redis.pcall('HGET', KEYS[1], 'version')
if type(stored) == 'table' and stored.err then
	return redis.error_reply('CORRUPT ' .. stored.err)
elseif stored then
	stored = tonumber(stored)
	if not stored then
		return redis.error_reply('CORRUPT version field is not a number')
	end
elseif redis.call('EXISTS', KEYS[1]) == 1 then
	return redis.error_reply('CORRUPT hash has no version field')
else
	stored = 0
end
local version = tonumber(ARGV[1])
if stored ~= version - 1 then
	if stored == version and redis.call('HGET', KEYS[1], 'put_id') == ARGV[4] then
		return redis.status_reply('OK')
	end
	return redis.error_reply('CONFLICT stored version is ' .. stored)
end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'state', ARGV[2], 'put_id', ARGV[4])
if ARGV[3] == '0' then
	redis.call('PERSIST', KEYS[1])
else
	redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
redis.call('PUBLISH', ARGV[6], ARGV[5])
return redis.status_reply('OK')
`)

// deleteScript removes a task and, if it existed, publishes the deletion so
// that watchers learn the task is gone.
//
// KEYS[1] -> <prefix>{<id>}, the task's hash
// ARGV[1] -> the deletion notification to publish
// ARGV[2] -> <prefix>{<id>}:events, the channel of the task's changes
//
// Returns "OK".
var deleteScript = redis.NewScript(`
if redis.call('DEL', KEYS[1]) == 1 then
	redis.call('PUBLISH', ARGV[2], ARGV[1])
end
return redis.status_reply('OK')
`)
