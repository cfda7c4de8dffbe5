"""The initial-request decision: the one-round-trip call context read from a real Redis,
then the pure decision."""
import time

import pytest

from lib.decisions import routing
from lib.features import calls, registrar
from lib.features.registrar import RegisterRequest
from lib.store import clients, wire
from lib.users.provisioning import Provisioning
from tests.support.apicall import ADMIN

DOMAIN = "127.0.0.1"
NODE = "n1"    # the proxy whose view of MDS health applies


@pytest.fixture
def prov(r):
    p = Provisioning(r, DOMAIN)
    p.put_mds("mds1", {"uri": "sip:127.0.0.10:5070", "addresses": ["127.0.0.10"]})
    p.put_user("1000", {"name": "Alice", "password": "s", "line_type": "ua", "mds": "mds1",
                        "dids": ["+33123456789"]})
    p.put_user("2000", {"name": "Carol", "password": "s", "line_type": "ua"})
    return p


def register(number, transport, peer=None, conid=None, uri="sip:x@h", expires="600"):
    """A REGISTER decided over the user's stored bindings and applied, as the glue does."""
    now = time.time()
    req = RegisterRequest(number=number, transport=transport, source=f"sip:{peer or 'h'}",
                          socket="tcp:127.0.0.1:8088", conid=conid, peer=peer,
                          contacts=[f"<{uri}>"], expires=expires, call_id=uri, cseq=1,
                          node="n1")
    result = registrar.process_register(req, "ua", registrar.load(number)[2], now, 5)
    registrar.apply(number, result)


def test_context_from_mds_to_a_did(prov):
    register("1000", "udp")
    ctx = calls.load_context("127.0.0.10", "", "+33123456789", time.time(), NODE)
    assert ctx.source_mds == "mds1" and ctx.caller is None
    assert ctx.callee["number"] == "1000" and ctx.callee_selected is None
    assert [c["class"] for c in ctx.callee_contacts.values()] == ["deskphone"]
    decision = calls.decide(ctx, "+33123456789", DOMAIN, list(ctx.callee_contacts.values()))
    assert decision.device == "deskphone" and decision.reason == "logged_out"


def test_device_call_goes_to_callers_mds(prov):
    ctx = calls.load_context("127.0.0.20", "1000", "555", time.time(), NODE)
    assert ctx.source_mds is None and ctx.caller_ha1 and ctx.caller_mds_uri == "sip:127.0.0.10:5070"
    assert calls.decide(ctx, "555", DOMAIN, []) == \
        routing.RelayToMds("sip:555@127.0.0.10:5070", f"<sip:1000@{DOMAIN}>")


def test_standalone_user_calls_local_user_by_the_same_rules(prov):
    prov.set_device("1000", "deskphone")
    register("1000", "ws", peer="127.0.0.1:4000", conid=3, uri="sip:tab@t.invalid")
    ctx = calls.load_context("127.0.0.20", "2000", "1000", time.time(), NODE)
    decision = calls.decide(ctx, "1000", DOMAIN, list(ctx.callee_contacts.values()))
    assert (decision.device, decision.reason) == ("webrtc", "selected_unavailable")
    assert calls.decide(calls.load_context("127.0.0.20", "2000", "4242", time.time(), NODE),
                        "4242", DOMAIN, []) == routing.Reject(404, "Not Found")


def test_contacts_of_dead_local_connections_are_not_reachable():
    contacts = {"a": {"conid": 3, "node": "n1"}, "b": {"conid": 4, "node": "n1"},
                "c": {"conid": None, "node": "n1"}, "d": {"conid": 3, "node": "n2"}}
    reachable, dead = calls.split_reachable(contacts, "n1", lambda conid: conid == 4)
    assert dead == [contacts["a"]]
    assert reachable == [contacts["b"], contacts["c"], contacts["d"]]


def trips(monkeypatch):
    """The round trips of the call context (lib/store's tracking link), by command names."""
    seen = []
    exchange = wire._tracked_exchange
    monkeypatch.setattr(wire, "_tracked_exchange", lambda *commands: (
        commands and seen.append([c[0] for c in commands])) or exchange(*commands))
    return seen


def test_routing_decision_reads_redis_in_one_round_trip(prov, monkeypatch):
    register("1000", "udp")
    calls.load_context("127.0.0.10", "", "+33123456789", time.time(), NODE)  # script loaded
    round_trips = trips(monkeypatch)
    ctx = calls.load_context("127.0.0.10", "", "+33123456789", time.time(), NODE)
    assert round_trips == [["CLIENT", "EVALSHA"]] and ctx.callee["number"] == "1000"


def test_context_is_cached_until_redis_says_what_it_read_changed(prov, call, monkeypatch):
    register("1000", "udp")
    load = lambda: calls.load_context("127.0.0.10", "", "1000", time.time(), NODE)  # noqa
    assert load().callee_selected is None
    round_trips = trips(monkeypatch)
    assert load().callee_selected is None and round_trips == []     # from the cache
    switch = call("PUT", "/api/v1/users/1000/device", {"device": "webrtc"}, ADMIN)
    assert switch.status == 200                 # another connection writes: invalidated
    assert load().callee_selected == "webrtc" and len(round_trips) == 1
    register("1000", "ws", peer="127.0.0.1:4000", conid=3, uri="sip:tab@t.invalid")
    assert {c["class"] for c in load().callee_contacts.values()} == {"deskphone", "webrtc"}
    register("1000", "udp", expires="0")                                # the deskphone logs out
    register("1000", "ws", peer="127.0.0.1:4000", conid=3, uri="sip:tab@t.invalid", expires="0")
    assert load().callee_contacts == {} and len(round_trips) == 3
    mds = {"uri": "sip:127.0.0.10:5080", "addresses": ["127.0.0.10"]}
    assert call("PUT", "/api/v1/mds/mds1", mds, ADMIN).status == 200
    assert load().callee_mds_uri == "sip:127.0.0.10:5080"
    assert len(round_trips) == 4


def test_an_acknowledged_change_applies_to_the_very_next_call_every_time(prov, call):
    """Each change made the way it is acknowledged (the API's answer, a REGISTER's 200),
    then at once the routing read, 200 times over. The API's and the registrar's own work
    after their write leaves Redis time to send the invalidations, so this passes even
    without store.acknowledged's round trip: the race itself is pinned down by
    tests/redis/test_store.py, whose read comes right after the write."""
    load = lambda: calls.load_context("127.0.0.10", "", "1000", time.time(), NODE)  # noqa
    for n in range(200):
        device = ("webrtc", "deskphone")[n % 2]
        assert call("PUT", "/api/v1/users/1000/device", {"device": device}, ADMIN).status == 200
        assert load().callee_selected == device
        register("1000", "udp", expires=("600", "0")[n % 2])
        assert len(load().callee_contacts) == 1 - n % 2


def test_a_did_or_an_unknown_number_is_looked_up_again_once_it_changes(prov, monkeypatch):
    load = lambda n: calls.load_context("127.0.0.10", "", n, time.time(), NODE)  # noqa
    assert load("4242").callee is None
    round_trips = trips(monkeypatch)
    assert load("4242").callee is None and round_trips == []       # "not found" is cached
    prov.put_user("4242", {"name": "Dave", "password": "s", "line_type": "ua"})
    assert load("4242").callee["number"] == "4242"
    load("+33123456789")
    assert load("+33123456789").callee["number"] == "1000"          # a DID: never cached
    assert len(round_trips) == 3


def test_no_cache_when_it_is_off(prov, monkeypatch):
    monkeypatch.setenv("UA_CONTEXT_CACHE", "0")
    load = lambda: calls.load_context("127.0.0.10", "", "1000", time.time(), NODE)  # noqa
    assert load().callee_selected is None
    round_trips = []
    run = wire.run
    monkeypatch.setattr(wire, "run", lambda *commands: round_trips.append(
        [c[0] for c in commands]) or run(*commands))
    prov.set_device("1000", "webrtc")
    monkeypatch.setattr(wire, "_tracked_exchange", lambda *commands: round_trips.append(
        ["tracking connection used"]))
    assert load().callee_selected == "webrtc" and round_trips == [["EVALSHA"]]


def test_cache_forgets_everything_when_its_connection_is_lost(prov, redis_server, monkeypatch):
    load = lambda: calls.load_context("127.0.0.10", "", "1000", time.time(), NODE)  # noqa
    load()
    round_trips = trips(monkeypatch)
    redis_server.stop()
    with pytest.raises(clients.StoreUnavailable):
        load()                                   # nothing answered from a stale cache
    redis_server.start()
    wire._held_off_until = 0.0
    prov.set_device("1000", "deskphone")         # written while nobody tracked it
    assert load().callee_selected == "deskphone" and round_trips[-1][0] == "CLIENT"


def test_cache_holds_a_bounded_number_of_contexts(prov, monkeypatch):
    monkeypatch.setenv("UA_CONTEXT_CACHE", "3")
    for n in ("1000", "2000", "4242", "5000"):
        calls.load_context("127.0.0.10", "", n, time.time(), NODE)
    cached = [entry[2][2] for entry in wire._cache.values]
    assert cached == ["2000", "4242", "5000"]                        # the oldest left
    prov.set_device("2000", "webrtc")
    calls.load_context("127.0.0.10", "", "4242", time.time(), NODE)  # reads what Redis said
    assert [entry[2][2] for entry in wire._cache.values] == ["4242", "5000"]
    # the index of keys holds only what is cached
    assert {entry for entries in wire._cache.by_key.values() for entry in entries} \
        == set(wire._cache.values)
