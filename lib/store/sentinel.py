"""Redis Sentinel (UA_REDIS_SENTINELS, UA_REDIS_MASTER): the state store is the master the
sentinels name, followed across failovers.

redis-py asks the sentinels for the master whenever it opens a connection, and a command
on a dead master, or a write on a demoted one (READONLY), drops the connection. That is
not enough: after a failover the old master, if still running, keeps answering, as a
master, until Sentinel turns it into a replica (about ten seconds later), and a process
connected to it reads old state and writes what the failover then discards. So a process
asks the sentinels again at most once a second, and leaves a master they no longer name.
"""
import time

import redis
import redis.connection
import redis.sentinel

CHECK_SECONDS = 1.0
_checked = 0.0


def connect(cfg, **options):
    """A client of cfg.redis_master; UA_REDIS_URL, if set, gives its credentials and db."""
    url = redis.connection.parse_url(cfg.redis_url) if cfg.redis_url else {}
    auth = {k: url[k] for k in ("username", "password", "db") if k in url}
    sentinels = redis.sentinel.Sentinel(cfg.redis_sentinels, sentinel_kwargs=options,
                                        **options)
    return sentinels.master_for(cfg.redis_master, **auth)


def follow(client):
    """Point `client` at the master the sentinels name now (checked at most once a second);
    unreachable sentinels leave it on the master it knows."""
    global _checked
    pool = client.connection_pool
    if not isinstance(pool, redis.sentinel.SentinelConnectionPool):
        return
    now = time.monotonic()
    if now - _checked < CHECK_SECONDS:
        return
    _checked = now
    try:
        pool.get_master_address()      # a new address closes the connections to the old
    except redis.ConnectionError:
        pass


def moved(conn, client):
    """Whether `conn`, made by `client`'s pool, is connected to a master the sentinels no
    longer name (as `follow` last learnt): the caller drops it, and its next command
    connects to the master named now."""
    pool = client.connection_pool
    if not isinstance(pool, redis.sentinel.SentinelConnectionPool):
        return False
    return (conn._sock is not None and pool.master_address is not None
            and (conn.host, conn.port) != pool.master_address)
