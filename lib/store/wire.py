"""The SIP hot path's own Redis connection: commands packed and parsed by hiredis, batched
writes, Lua scripts by SHA, and a client-side cache of what rarely changes."""
import hashlib
import socket
import struct
import sys
import time

import hiredis
import redis

from lib.store import clients, keyspace, sentinel
from lib.store.clients import StoreUnavailable, call, client


WAIT_MS = 250    # under the socket timeout: a missing replica is a 503, not a hang


def acknowledged(r=None, reroutes=True):
    """Call before acknowledging a change (a REGISTER's 200, an API answer).

    Every process caches call contexts and learns of a change from an invalidation (see
    the client-side cache below). Redis sends the writer its reply first and the other
    connections' invalidations after it, in the same pass of its event loop (measured: an
    immediate read from another connection missed the invalidation in 2.5 % of tries).
    So a change that `reroutes` calls ends with one more round trip begun after the
    write's reply: Redis answers it only after that pass, so every invalidation was sent
    before the change is acknowledged, and the next call routes by it.

    With UA_REDIS_WAIT > 0 that round trip also waits until that many replicas hold
    every write this process made so far, so that a failover cannot lose it. WAIT counts
    only its own connection's writes, hence the PUBLISH (replicated, and read by nobody)
    on the same connection first. Too few replicas in time: StoreUnavailable, the change
    is not acknowledged."""
    if r is None:
        client()
    wanted = clients.redis_wait
    if not wanted:
        if reroutes:
            run(("PING",)) if r is None else r.ping()
        return

    def wait(r):
        pipe = r.pipeline(transaction=False)
        pipe.publish(keyspace.REPLICATED_CHANNEL, b"")
        pipe.wait(wanted, WAIT_MS)
        return pipe.execute()[1]
    acked = call(wait) if r is None else wait(r)
    if acked < wanted:
        raise StoreUnavailable(f"{acked} of {wanted} replicas acknowledged the write")


# --- the SIP hot path: packed commands on a connection of this process's own ---------------
# redis-py's pool, pipeline and command layers cost more CPU than a round trip itself
# (make bench): a call's few round trips go straight through one socket, packed and parsed
# by hiredis. redis-py still opens the connection (address, Sentinel, credentials,
# protocol handshake).
# A frozen Redis (no answer, no reset) must not hold the SIP workers: this connection waits
# at most UA_REDIS_TIMEOUT_MS, and after a timeout the process answers 503 at once for
# HOLD_OFF seconds before it tries again, so one request per process and HOLD_OFF pays it.
HOLD_OFF = 1.0

class _Link:
    def __init__(self, owner, on_push=None):
        self.owner = owner          # the client (one per process) whose pool made it
        self.conn = owner.connection_pool.make_connection()
        self.conn.socket_timeout = self.conn.socket_connect_timeout = clients.hot_timeout
        self.sock = self.reader = None
        # the tracking link: RESP3, Redis pushes invalidations on it (None: flush all)
        self.on_push = on_push
        self.scripts = set()    # SHAs of the scripts batch() sent whole on this connection

    def ready(self):
        """The socket, opened if needed (see _exchange for one Redis closed meanwhile)."""
        if self.sock is not None and sentinel.moved(self.conn, self.owner):
            self.close()
        if self.sock is None:
            self.conn.connect()
            self.sock, self.reader = self.conn._sock, hiredis.Reader()
            # Blocking with the kernel's timeouts: Python's own socket timeout polls
            # before every send and every receive (two more syscalls per round trip).
            self.sock.settimeout(None)
            seconds, fraction = divmod(clients.hot_timeout, 1)
            timeval = struct.pack("ll", int(seconds), int(fraction * 1e6))
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
            if self.on_push:
                self.on_push(None)      # what the last connection cached is unknown now
                self.sock.sendall(hiredis.pack_command(("HELLO", "3"))
                                  + hiredis.pack_command(("CLIENT", "TRACKING", "ON", "OPTIN")))
                for reply in self.read(2):
                    if isinstance(reply, hiredis.ReplyError):
                        raise redis.ConnectionError(f"client tracking refused: {reply}")
        return self.sock

    def read(self, count):
        """The next `count` replies (a BlockingIOError: the kernel's receive timeout)."""
        replies = []
        while len(replies) < count:
            reply = self.reader.gets()
            if reply is False:
                data = self.sock.recv(65536)
                if not data:
                    raise redis.ConnectionError("connection closed by Redis")
                self.reader.feed(data)
            elif isinstance(reply, hiredis.PushNotification):
                self.on_push(reply)
            else:
                replies.append(reply)
        return replies

    def drain(self):
        """Read the invalidations that arrived since the last use, without waiting (a
        connection Redis closed meanwhile raises, and _exchange replaces it)."""
        while True:
            try:
                data = self.sock.recv(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            if not data:
                raise redis.ConnectionError("connection closed by Redis")
            self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            if not isinstance(reply, hiredis.PushNotification):
                raise hiredis.ProtocolError("a reply to no command")
            self.on_push(reply)

    def close(self):
        self.conn.disconnect()
        self.sock = self.reader = None
        self.scripts = set()
        if self.on_push:
            self.on_push(None)

    def loadable(self, command):
        """A batched EVALSHA goes whole (EVAL) the first time on a connection: a Redis that
        restarted does not know the script, and a batch is never sent twice."""
        if command[0] != "EVALSHA" or command[1] in self.scripts:
            return command
        self.scripts.add(command[1])
        return _whole(command)


_link = None
_shas = {}
_lua_of = {}    # the reverse of _shas
_held_off_until = 0.0


# what a connection Redis closed gives when used (redis.ConnectionError: end of stream)
CLOSED = (redis.ConnectionError, BrokenPipeError, ConnectionResetError,
          ConnectionAbortedError)


def _packed(commands):
    return b"".join(hiredis.pack_command(c) for c in commands)


def _exchange(link, commands, batched=False):
    """Commands (tuples) in one round trip on `link`; their raw replies (see run). A
    connection Redis closed while it was idle (a restart) is not checked before every round
    trip (a syscall each): the commands go once more on a new connection when the old one
    turns out closed. `batched` (see batch()): error replies are returned in place."""
    global _held_off_until
    if _held_off_until and time.monotonic() < _held_off_until:
        raise StoreUnavailable("no answer from Redis a moment ago")
    while True:
        reused = link.sock is not None
        try:
            sock = link.ready()
            if link.on_push:
                link.drain()
            if not commands:
                return []
            if batched:
                commands = [link.loadable(c) for c in commands]
            sock.sendall(_packed(commands))
            replies = link.read(len(commands))
            break
        except (redis.ConnectionError, redis.TimeoutError, OSError,
                hiredis.ProtocolError) as exc:
            link.close()
            if reused and isinstance(exc, CLOSED):
                continue
            # BlockingIOError: the kernel's receive or send timeout ran out
            if isinstance(exc, (TimeoutError, redis.TimeoutError, BlockingIOError)):
                _held_off_until = time.monotonic() + HOLD_OFF
            raise StoreUnavailable(str(exc)) from exc
    for reply in replies:
        if isinstance(reply, hiredis.ReplyError):
            if str(reply).startswith("READONLY"):   # a master demoted by a failover
                link.close()
                raise StoreUnavailable(str(reply))
            if str(reply).startswith("LOADING"):    # reading its data back after a restart
                raise StoreUnavailable(str(reply))
            if not batched:
                raise redis.ResponseError(str(reply))
    return replies


def _current(link, on_push=None):
    """`link` if it was made by this process's client, else a new one (after a fork, or a
    new client)."""
    owner = client()
    return link if link is not None and link.owner is owner else _Link(owner, on_push)


def run(*commands):
    """Commands (tuples) in one round trip; their raw replies. An error reply raises
    redis.ResponseError once every reply has been read (the connection stays in step); a
    connection problem raises StoreUnavailable."""
    global _link
    _link = _current(_link)
    return _exchange(_link, commands)


def batch(*commands):
    """Independent writes (a batch of call events, lib/features/callstate) in one round
    trip on run()'s connection; their replies, None for a command Redis refused (logged:
    the others are applied, so the batch is not sent again). Each script goes whole
    (EVAL) the first time on a connection, so that a restarted Redis runs it."""
    global _link
    _link = _current(_link)
    replies = _exchange(_link, commands, batched=True)
    for command, reply in zip(commands, replies):
        if isinstance(reply, hiredis.ReplyError):
            sys.stderr.write(f"ua: a call-event write failed: {command[0]} {reply}\n")
    return [None if isinstance(r, hiredis.ReplyError) else r for r in replies]


def _whole(command):
    """An EVALSHA as EVAL, the script's text sent along (Redis may not know it)."""
    return ("EVAL", _lua_of[command[1]], *command[2:]) if command[0] == "EVALSHA" else command


def pairs(reply):
    """The (field, value) pairs of a hash read raw: a dict in RESP3, a flat list in RESP2."""
    return reply.items() if isinstance(reply, dict) else zip(reply[::2], reply[1::2])


def _sha(lua):
    sha = _shas.get(lua)
    if sha is None:
        sha = _shas[lua] = hashlib.sha1(lua.encode()).hexdigest()
        _lua_of[sha] = lua
    return sha


def evalsha(lua, keys=(), args=(), exchange=None, before=()):
    """A Lua script by its SHA; sent whole (EVAL, which caches it) when Redis doesn't know
    it yet, e.g. after a restart or a failover. `before`: commands sent ahead of it in the
    same round trip (their replies are not returned)."""
    exchange = exchange or run
    command = script_command(lua, keys, args)
    try:
        return exchange(*before, command)[-1]
    except redis.ResponseError as exc:
        if not str(exc).startswith("NOSCRIPT"):
            raise
        return exchange(*before, _whole(command))[-1]


def script_command(lua, keys=(), args=()):
    """The EVALSHA of a Lua script (a Redis that does not know it yet refuses it)."""
    return ("EVALSHA", _sha(lua), len(keys), *keys, *args)


# --- client-side caching of what rarely changes --------------------------------------------
# The routing context of a call (profiles, selection, bindings, forwarding rules, MDS
# records) changes far less often than calls come. A process keeps the decoded replies of a
# read-only script and Redis tells it, on a RESP3 connection of its own with CLIENT
# TRACKING (OPTIN: only those reads are tracked), when a key one of them read changed.
# Redis queues the invalidation while executing the write and sends it in the same pass of
# its event loop, just after the writer's own reply; it is read (without waiting) before
# every use, and a change is acknowledged only after acknowledged()'s round trip: a device
# switch or a logout applies to the next call. A lost connection forgets everything cached.
class _Cache:
    def __init__(self):
        self.values = {}        # (lua, keys, args) -> decoded reply
        self.by_key = {}        # key (bytes) -> the entries that read it

    def put(self, entry, value, keys):
        if len(self.values) >= clients.cache_entries:
            self.drop(next(iter(self.values)))     # the oldest
        self.values[entry] = value
        for key in keys:
            self.by_key.setdefault(key.encode(), set()).add(entry)

    def drop(self, entry):
        """Forget an entry, and it in the index of every key it read."""
        del self.values[entry]
        for key in entry[1]:
            entries = self.by_key.get(key.encode())
            if entries:
                entries.discard(entry)
                if not entries:
                    del self.by_key[key.encode()]

    def invalidated(self, push):
        """A push from Redis: ["invalidate", [keys]] or ["invalidate", None] (flush), or
        None (the connection is new or gone)."""
        if push is not None and push[0] != b"invalidate":
            return
        if push is None or push[1] is None:
            self.values.clear()
            self.by_key.clear()
            return
        for key in push[1]:
            for entry in self.by_key.pop(key, ()):
                self.drop(entry)


_cache = _Cache()
_tracked = None
_MISSING = object()


def _tracked_exchange(*commands):
    """run() on the tracking connection (a new one empties the cache as it connects)."""
    global _tracked
    _tracked = _current(_tracked, _cache.invalidated)
    return _exchange(_tracked, commands)


def caching():
    """Whether this process keeps a client-side cache (UA_CONTEXT_CACHE above 0)."""
    client()
    return clients.cache_entries > 0


def cached_script(lua, keys, args, decode, cacheable=lambda reply: True):
    """decode(reply) of a read-only script that reads only its `keys` (the keys Redis tracks
    for it), from this process's cache while none of them changed: what decode returns is
    shared by every later call and never modified. `cacheable(reply)`: False for a reply
    that also depends on keys not declared (it is not kept)."""
    client()
    if not clients.cache_entries:
        return decode(evalsha(lua, keys, args))
    entry = (lua, tuple(keys), tuple(args))
    _tracked_exchange()                 # the invalidations waiting, read first
    value = _cache.values.get(entry, _MISSING)
    if value is _MISSING:
        reply = evalsha(lua, keys, args, exchange=_tracked_exchange,
                        before=[("CLIENT", "CACHING", "YES")])
        value = decode(reply)
        if cacheable(reply):
            _cache.put(entry, value, keys)
    return value

