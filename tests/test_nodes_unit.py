"""The cluster's proxies as seen by one process (lib/nodes), against a real Redis."""
from lib import nodes, store


def test_a_peer_is_trusted_without_a_round_trip_and_a_new_one_at_once(redis_url, r, monkeypatch):
    monkeypatch.setattr(nodes, "_peers", frozenset())
    nodes.announce("a", "127.0.0.2:5060")
    assert nodes.is_peer("127.0.0.2")
    reads = []
    call = store.call
    monkeypatch.setattr(store, "call", lambda fn: reads.append(fn) or call(fn))
    assert nodes.is_peer("127.0.0.2") and reads == []          # a relayed call: no round trip
    r.hset(nodes.NODES_KEY, "b", "127.0.0.3:5060")            # a proxy that has just started
    assert nodes.is_peer("127.0.0.3") and len(reads) == 1
    assert not nodes.is_peer("127.0.0.99") and len(reads) == 2  # unknown: always asked
