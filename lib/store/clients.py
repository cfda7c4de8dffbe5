"""Redis clients: one per process, opened lazily after fork (fast: a request needing
state gets 503 rather than a hang), a bulk one for long commands, Sentinel-aware."""
import os

import redis

from lib import config
from lib.store import sentinel


class StoreUnavailable(Exception):
    """The state store cannot be reached; callers answer 503 with Retry-After."""


_client = None
_client_pid = None
# Read with the client (config.load() is not free) for lib/store/wire: replicas a change
# waits for (UA_REDIS_WAIT), the hot path's timeout in seconds, the cache's size.
redis_wait = 0
hot_timeout = None
cache_entries = 0


# A client that fails fast: a request needing state gets 503 rather than a hang.
FAST = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5, "retry_on_timeout": False,
        "health_check_interval": 0}
_read_timeout = FAST["socket_timeout"]    # client()'s; serve_http() changes it


def connect(url):
    return redis.Redis.from_url(url, **FAST)


def client():
    """This process's Redis client, created on first use after fork."""
    global _client, _client_pid, redis_wait, hot_timeout, cache_entries
    if _client is None or _client_pid != os.getpid():
        cfg = config.load()
        options = {**FAST, "socket_timeout": _read_timeout}
        _client = (sentinel.connect(cfg, **options) if cfg.redis_sentinels
                   else redis.Redis.from_url(cfg.redis_url, **options))
        _client_pid = os.getpid()
        redis_wait = cfg.redis_wait
        hot_timeout = cfg.redis_timeout_ms / 1000
        cache_entries = cfg.context_cache
    sentinel.follow(_client)
    return _client


BULK_TIMEOUT = 60.0


def serve_http(read_timeout):
    """For the API server, before its first client: how long a request waits for a reply
    before its 503. Kamailio's processes keep FAST's: a SIP worker must not wait; an API
    request may outwait another client's long transaction (a 100,000-user import holds
    Redis about 0.4 s). A Redis that is down still fails at once (connect timeout)."""
    global _read_timeout
    _read_timeout = read_timeout


def bulk_connect(cfg):
    """A client for long commands (the API server's CSV import and export: one transaction
    of 100,000 users takes Redis longer than the fast client waits). Its connections
    still fail at once when Redis is down."""
    options = {**FAST, "socket_timeout": BULK_TIMEOUT}
    return (sentinel.connect(cfg, **options) if cfg.redis_sentinels
            else redis.Redis.from_url(cfg.redis_url, **options))


def round_trip(r, commands):
    """The replies of several commands sent in one round trip on one of the client's
    connections: what a pipeline does, without redis-py's Pipeline object, whose
    bookkeeping cost the API's password check 0.04-0.07 ms a request (make bench's
    api_auth row). Retried on a broken connection as the client's own commands are."""
    pool = r.connection_pool
    conn = pool.get_connection()

    def send():
        conn.send_packed_command(conn.pack_commands(commands))
        return [conn.read_response() for _ in commands]
    try:
        # a failed exchange may leave replies unread: the connection is closed, not reused
        return conn.retry.call_with_retry(send, lambda _error: conn.disconnect())
    except BaseException:
        conn.disconnect()
        raise
    finally:
        pool.release(conn)


_scripts = {}


def script(r, lua, keys=(), args=()):
    """Run a Lua script by its SHA (EVALSHA): its text goes to Redis once, not with every
    request; redis-py loads it again by itself after a Redis restart."""
    loaded = _scripts.get(lua)
    if loaded is None:
        loaded = _scripts[lua] = r.register_script(lua)
    return loaded(keys=list(keys), args=list(args), client=r)


def call(fn):
    """Run fn(redis) and turn any connection problem into StoreUnavailable."""
    try:
        return fn(client())
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise StoreUnavailable(str(exc)) from exc

