"""The initial-request decision: the one-round-trip call context read from a real Redis,
then the pure decision."""
import time

import pytest
import redis

from lib import calls, registrar, routing, store
from lib.provisioning import Provisioning
from lib.registrar import RegisterRequest

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


def register(number, transport, peer=None, conid=None, uri="sip:x@h"):
    now = time.time()
    req = RegisterRequest(number=number, transport=transport, source=f"sip:{peer or 'h'}",
                          socket="tcp:127.0.0.1:8088", conid=conid, peer=peer,
                          contacts=[f"<{uri}>"], expires="600", call_id=uri, cseq=1, node="n1")
    result = registrar.process_register(req, "ua", {}, now, 5)
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


def test_routing_decision_reads_redis_in_one_round_trip(prov, monkeypatch):
    register("1000", "udp")
    calls.load_context("127.0.0.10", "", "1000", time.time(), NODE)   # Redis has the script now
    round_trips = []            # store.run sends its commands in one round trip
    run = store.run
    monkeypatch.setattr(store, "run", lambda *commands: round_trips.append(
        [c[0] for c in commands]) or run(*commands))
    ctx = calls.load_context("127.0.0.10", "", "+33123456789", time.time(), NODE)
    assert round_trips == [["EVALSHA"]] and ctx.callee["number"] == "1000"
