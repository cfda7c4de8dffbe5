"""The cluster's proxies as seen by one process (lib/features/nodes), against a real Redis."""
from lib.features import nodes
from lib.store import clients, keyspace


def test_a_peer_is_trusted_without_a_round_trip_and_a_new_one_at_once(redis_url, r, monkeypatch):
    monkeypatch.setattr(nodes, "_peers", frozenset())
    nodes.announce("a", "127.0.0.2:5060")
    assert nodes.is_peer("127.0.0.2")
    reads = []
    call = clients.call
    monkeypatch.setattr(clients, "call", lambda fn: reads.append(fn) or call(fn))
    assert nodes.is_peer("127.0.0.2") and reads == []          # a relayed call: no round trip
    r.hset(keyspace.NODES_KEY, "b", "127.0.0.3:5060")            # a proxy that has just started
    assert nodes.is_peer("127.0.0.3") and len(reads) == 1
    assert not nodes.is_peer("127.0.0.99") and len(reads) == 2  # unknown: always asked


def contact(uri, source, conid=None, node="a"):
    return {"uri": uri, "source": source, "conid": conid, "node": node}


def test_only_a_device_not_where_its_contact_says_needs_its_replies_aliased():
    here = contact("sip:1000@127.0.0.20:5070;transport=udp", "sip:127.0.0.20:5070;transport=udp")
    default_port = contact("sip:1000@Desk.example", "sip:desk.example:5060;transport=udp")
    assert not nodes.replies_need_alias([here, default_port], "a")
    behind_nat = contact("sip:1000@192.168.1.50:5060", "sip:127.0.0.20:5070;transport=udp")
    other_port = contact("sip:1000@127.0.0.20:5060", "sip:127.0.0.20:5070;transport=udp")
    connection = contact("sip:1000@127.0.0.20:5070;transport=tcp",
                         "sip:127.0.0.20:5070;transport=tcp", conid=7)
    other_proxy = contact(here["uri"], here["source"], node="b")
    ipv6 = contact("sip:1000@[::1]:5070", "sip:[::1]:5071;transport=udp")
    for odd in (behind_nat, other_port, connection, other_proxy, ipv6):
        assert nodes.replies_need_alias([here, odd], "a"), odd
