"""lib/store's SIP hot path against a real Redis: what a round trip does when the
connection it holds was closed by Redis meanwhile."""
import pytest

from lib import store


def test_a_connection_closed_by_a_restart_is_replaced_not_failed_on(redis_server, r):
    r.set("k", "before")
    assert store.run(("GET", "k")) == [b"before"]
    redis_server.stop()
    redis_server.start()                       # the process's socket is closed now
    assert store.run(("GET", "k")) == [b"before"]           # sent again, on a new one
    assert store.run(("SET", "k", "after"), ("GET", "k")) == [b"OK", b"after"]


def test_redis_down_is_store_unavailable_and_back_is_served(redis_url, redis_server):
    assert store.run(("PING",)) == [b"PONG"]
    redis_server.stop()
    try:
        with pytest.raises(store.StoreUnavailable):
            store.run(("PING",))
    finally:
        redis_server.start()
    assert store.run(("PING",)) == [b"PONG"]
