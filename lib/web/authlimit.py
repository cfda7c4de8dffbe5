"""Failed API authentications limited per source address (contract section 9).

After `api_auth_failures` failed authentications (a wrong token, a wrong password, a
malformed Authorization header) within 60 s from one address, that address is blocked for
`api_auth_block_seconds`: its requests get 429 with Retry-After before their credentials
are checked, so a SIP password that digest protects cannot be guessed over the API at the
API server's speed. The counts live in Redis, so every API server of a cluster shares them.

Nobody is locked out by someone else's failures: there is no per-account block. Failures
against one account are counted per minute with the addresses they came from, and a burst
(as many failures as the per-address limit, from any number of addresses) is logged once a
minute as a WARNING naming the account, never the credentials tried.
"""
import logging

import redis

from lib.store import clients, keyspace
from lib.users import profiles

log = logging.getLogger("ua.api")

WINDOW_SECONDS = 60
UNREACHABLE = (redis.ConnectionError, redis.TimeoutError, OSError, clients.StoreUnavailable)

# One round trip per failure. KEYS: the address's failures, its block, the account's
# failures (a hash: "count", and one field per address), the account's warned flag.
# ARGV: limit, block seconds, window seconds, address, whether an account was named.
# Returns {blocked now (0/1), account failures, account addresses, warn now (0/1)}.
_FAILED = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
local blocked = 0
if n >= tonumber(ARGV[1]) then
  redis.call('SET', KEYS[2], '1', 'EX', ARGV[2])
  redis.call('DEL', KEYS[1])
  blocked = 1
end
if ARGV[5] == '0' then return {blocked, 0, 0, 0} end
local count = redis.call('HINCRBY', KEYS[3], 'count', 1)
redis.call('HSETNX', KEYS[3], 'a:' .. ARGV[4], '1')
if count == 1 then redis.call('EXPIRE', KEYS[3], ARGV[3]) end
local warn = 0
if count >= tonumber(ARGV[1]) and redis.call('SET', KEYS[4], '1', 'EX', ARGV[3], 'NX') then
  warn = 1
end
return {blocked, count, redis.call('HLEN', KEYS[3]) - 1, warn}
"""


def blocked_for(r, address, number=None):
    """(seconds the address stays blocked or None, and user `number`'s
    profiles.AUTH_FIELDS when a number is given) in one round trip: the limit costs a
    user's request nothing more than its password check. Without the store nothing is
    blocked: a user's password cannot be checked then anyway (its read fails), and the
    admin token is too long to guess."""
    commands = [("TTL", keyspace.api_block_key(address))]
    if number:
        commands.append(("HMGET", keyspace.user_key(number), *profiles.AUTH_FIELDS))
    try:
        replies = clients.round_trip(r, commands)
    except UNREACHABLE:
        if number:
            raise
        return None, None
    ttl = replies[0]
    return (ttl if ttl and ttl > 0 else None), (replies[1] if number else None)


def failed(r, cfg, address, account=None):
    """Count a failed authentication from `address` (against `account`, a user number,
    when the credentials named one); True when the address is blocked from now on."""
    try:
        blocked, count, addresses, warn = clients.script(
            r, _FAILED,
            keys=(keyspace.api_failures_key(address), keyspace.api_block_key(address),
                  keyspace.api_account_key(account or ""),
                  keyspace.api_account_warned_key(account or "")),
            args=(cfg.api_auth_failures, cfg.api_auth_block_seconds, WINDOW_SECONDS,
                  address, "1" if account else "0"))
    except UNREACHABLE:
        return False
    if blocked:
        log.warning("%s failed API authentications from %s within %s s: blocked for %s s",
                    cfg.api_auth_failures, address, WINDOW_SECONDS, cfg.api_auth_block_seconds)
    if warn:
        log.warning("%s failed API authentications for account %s from %s addresses within "
                    "%s s", count, account, addresses, WINDOW_SECONDS)
    return bool(blocked)
