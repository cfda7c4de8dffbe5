"""Redis state store: one connection per process (opened lazily after fork), key layout,
msgpack encoding.

Key layout. Every key of one user carries the hash tag {N}, so a user's keys share one
Redis Cluster slot:
  ua:user:{N}        hash  profile -> msgpack user record (no secret)
                           ha1     -> digest HA1 (md5 of number:domain:password)
                           device  -> "webrtc" | "deskphone" (absent: never set)
                           forwards -> msgpack forwarding rules (absent: all disabled)
  ua:contacts:{N}    hash  <class>|<instance or contact uri> -> msgpack contact
  ua:calls:{N}       hash  Call-ID -> msgpack call in progress (lib/callstate)
  ua:history:{N}     list  msgpack call history entries, newest first
  ua:watchers:{N}    hash  BLF subscription Call-ID -> msgpack (lib/blf), with
  ua:presence:{N}, ua:watch:expiry: last notified state, expiry index
  ua:did:<did>       string -> N
  ua:users           set of every provisioned number
  ua:mds             hash  <name> -> msgpack {"uri", "addresses"}
  ua:mds:addr        hash  <ip> -> <name>
  ua:conn:<node>:<peer>  set of "<N>|<contact field>" bound to the connection from the
                     device's <peer> (ip:port) held by proxy <node>
  ua:conns:<node>    set of the peers of <node>'s connections holding registrations
"""
import os

import msgpack
import redis

from lib import config


class StoreUnavailable(Exception):
    """The state store cannot be reached; callers answer 503 with Retry-After."""


def user_key(number):
    return f"ua:user:{{{number}}}"


def contacts_key(number):
    return f"ua:contacts:{{{number}}}"


def calls_key(number):
    return f"ua:calls:{{{number}}}"


def history_key(number):
    return f"ua:history:{{{number}}}"


def did_key(did):
    return f"ua:did:{did}"


USERS_KEY = "ua:users"
MDS_KEY = "ua:mds"
MDS_ADDR_KEY = "ua:mds:addr"


def conn_key(node, peer):
    return f"ua:conn:{node}:{peer}"


def conns_key(node):
    return f"ua:conns:{node}"


def pack(value):
    return msgpack.packb(value, use_bin_type=True)


def unpack(raw):
    return None if raw is None else msgpack.unpackb(raw, raw=False)


_client = None
_client_pid = None


def connect(url):
    """A client that fails fast: a request needing state gets 503 rather than a hang."""
    return redis.Redis.from_url(
        url, socket_timeout=0.5, socket_connect_timeout=0.5, retry_on_timeout=False,
        health_check_interval=0)


def client():
    """This process's Redis client, created on first use after fork."""
    global _client, _client_pid
    if _client is None or _client_pid != os.getpid():
        _client = connect(config.load().redis_url)
        _client_pid = os.getpid()
    return _client


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
