//! The Lua scripts of the Redis store: each runs atomically in Redis, so what it reads and
//! what it writes cannot be interleaved with another instance's call. Keys are those of the
//! store's module comment; every script but [`GET`] touches only keys of one hash slot (and
//! `REVOKE_GRANT` builds its record keys from `ARGV`: they share `KEYS[1]`'s hash tag, which
//! a Cluster allows).

use redis::Script;
use std::sync::LazyLock;

/// `get`: the hash's grant from the index, then the record, in one round trip. Reads a key
/// it was not given, in another slot: never run on a Cluster, where `get` reads the index
/// and the record in two round trips instead (see `store::redis`).
pub(super) static GET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local grant = redis.call('GET', KEYS[1])
if not grant then return false end
return redis.call('HMGET', ARGV[1] .. '{' .. grant .. '}:r:' .. ARGV[2], 's', 'd')
",
    )
});

/// `consume` and `revoke`: sets the state (only of an `active` record unless ARGV[2] is
/// `any`) and returns the state and record as they were.
pub(super) static TRANSITION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local s = redis.call('HGET', KEYS[1], 's')
if not s then return false end
if ARGV[2] == 'any' or s == 'active' then redis.call('HSET', KEYS[1], 's', ARGV[1]) end
return {s, redis.call('HGET', KEYS[1], 'd')}
",
    )
});

/// `revoke_grant`: revokes every record of the grant that still exists and returns their
/// hashes; forgets hashes whose record expired.
pub(super) static REVOKE_GRANT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local revoked = {}
for _, h in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local k = ARGV[1] .. h
  if redis.call('EXISTS', k) == 1 then
    redis.call('HSET', k, 's', 'revoked')
    table.insert(revoked, h)
  else
    redis.call('SREM', KEYS[1], h)
  end
end
return revoked
",
    )
});

/// `add_failure`: notes one failure, drops those past retention, counts the window.
pub(super) static ADD_FAILURE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return redis.call('ZCOUNT', KEYS[1], ARGV[3], '+inf')
",
    )
});

/// `server_key`: set if absent, then read back, atomically.
pub(super) static SERVER_KEY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
",
    )
});
