"""Flood protection (issue 9): a source address sending more than UA_FLOOD_RATE SIP
requests within one second is blocked for UA_FLOOD_BLOCK_SECONDS: its requests are
dropped unanswered (an attacker learns nothing, and costs no reply).

The counting lives in Kamailio's shared memory (htable tables `ua_flood`, one counter per
address and second, and `ua_flood_block`, see kamailio.cfg), so every process sees the
same counts without a Redis round trip. An MDS and the other proxies of the cluster send a
lot legitimately and are never blocked; whether a source is one of them is asked from
Redis only once it goes over the rate, and remembered here for EXEMPT_CACHE_SECONDS.
"""
import redis

from lib.features import nodes
from lib.store import clients, keyspace

COUNTS, BLOCKS = "ua_flood", "ua_flood_block"   # htable names (kamailio.cfg)
EXEMPT_CACHE_SECONDS = 10

_exempt = {}    # ip -> (exempt, valid until): this process's answers from Redis


def counter_key(ip, now):
    """The counter of `ip`'s requests in the current second."""
    return f"{ip}|{int(now)}"


def over_rate(count, rate):
    return count > rate


def exempt(ip, now):
    """Whether `ip` is a provisioned MDS address or a proxy of the cluster. With the store
    unreachable the answer is yes: blocking an MDS would cut every call, while a real
    flood then costs only cheap 503s."""
    cached = _exempt.get(ip)
    if cached and cached[1] > now:
        return cached[0]
    try:
        answer = bool(clients.call(lambda r: r.hexists(keyspace.MDS_ADDR_KEY, ip))) or nodes.is_peer(ip)
    except (clients.StoreUnavailable, redis.RedisError):
        return True
    _exempt[ip] = (answer, now + EXEMPT_CACHE_SECONDS)
    return answer
