"""lib/store's SIP hot path against a real Redis: what a round trip does when the
connection it holds was closed by Redis meanwhile."""
import pytest

from lib.store import clients, wire


def test_a_connection_closed_by_a_restart_is_replaced_not_failed_on(redis_server, r):
    r.set("k", "before")
    assert wire.run(("GET", "k")) == [b"before"]
    redis_server.stop()
    redis_server.start()                       # the process's socket is closed now
    assert wire.run(("GET", "k")) == [b"before"]           # sent again, on a new one
    assert wire.run(("SET", "k", "after"), ("GET", "k")) == [b"OK", b"after"]


def test_redis_down_is_store_unavailable_and_back_is_served(redis_url, redis_server):
    assert wire.run(("PING",)) == [b"PONG"]
    redis_server.stop()
    try:
        with pytest.raises(clients.StoreUnavailable):
            wire.run(("PING",))
    finally:
        redis_server.start()
    assert wire.run(("PING",)) == [b"PONG"]


# --- batched writes ------------------------------------------------------------------

def test_a_batch_runs_its_scripts_on_a_restarted_redis_and_returns_refusals_in_place(
        redis_server, redis_url, r):
    lua = "return redis.call('INCR', KEYS[1])"
    assert wire.batch(wire.script_command(lua, ["n"])) == [1]   # whole (EVAL) the first time
    redis_server.stop()
    redis_server.start()            # the script is forgotten, the connection closed
    assert wire.batch(("SET", "k", "v"), ("INCR", "k"), wire.script_command(lua, ["n"])) == [
        b"OK", None, 2]             # INCR of a string refused: the rest applied
    assert wire.run(("MGET", "k", "n")) == [[b"v", b"2"]]


# --- the client-side cache --------------------------------------------------------------

def test_a_change_acknowledged_is_seen_by_the_next_cached_read_every_time(redis_url):
    """Redis sends a write's reply before the invalidations it owes other connections (one
    pass of its event loop, reply first). Read at once, without store.acknowledged's round
    trip in between, the cache kept the old value in about one read of 40."""
    lua = "return redis.call('GET', KEYS[1])"
    for n in range(500):
        wire.run(("SET", "k", n))          # not on the cache's own (tracking) connection
        wire.acknowledged()
        assert wire.cached_script(lua, ["k"], [], int) == n
