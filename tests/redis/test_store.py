"""lib/store's SIP hot path against a real Redis: what a round trip does when the
connection it holds was closed by Redis meanwhile."""
import pytest

from lib.store import clients, wire
from tests.support.devices import wait_until


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


# --- posted writes ----------------------------------------------------------------------

def test_a_post_is_applied_before_the_next_round_trip(redis_url):
    wire.post(("SET", "k", "posted"))
    assert wire.run(("GET", "k")) == [b"posted"]


def test_a_refused_posted_command_alone_is_sent_again_waiting(redis_url, r):
    lua = "return redis.call('INCR', KEYS[1])"
    wire.post(wire.script_command(lua, ["n"]))     # whole (EVAL) the first time
    assert wire.run(("GET", "n")) == [b"1"]
    r.script_flush()                                  # Redis forgets it (as after a restart)
    wire.post(("INCR", "m"), wire.script_command(lua, ["n"]))   # the script refused...
    wire.run(("PING",))                              # ... read here: sent again, waiting
    assert wire.run(("MGET", "m", "n")) == [[b"1", b"2"]]       # INCR m applied once


def test_posts_a_dead_redis_took_with_it_are_sent_again(redis_server, redis_url, r):
    assert wire.run(("PING",)) == [b"PONG"]
    r.execute_command("CLIENT", "PAUSE", 10000, "ALL")    # the post waits unread in Redis
    wire.post(("SET", "k", "posted"))
    redis_server.kill()
    redis_server.start()
    assert wire.run(("GET", "k")) == [b"posted"]


def test_a_post_after_a_restart_goes_at_once_on_a_new_connection(redis_server, redis_url, r):
    """Not left in the socket the restart closed until this process's next round trip:
    another process's later write of the same call would be applied before it."""
    wire.post(("SET", "k", "before"))        # its reply unread when Redis goes
    redis_server.stop()
    redis_server.start()
    wire.post(("SET", "k", "posted"))
    assert wait_until(lambda: r.get("k") == b"posted", 1)


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
