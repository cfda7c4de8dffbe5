"""The registrar decision (contract section 2) and its store operations on a real Redis."""
import time

import pytest

from lib.features import registrar
from lib.features.registrar import RegisterRequest, process_register
from lib.store import codec, keyspace, wire

NOW = 1_000_000.0


def request(contacts, expires=None, transport="udp", cseq=1, call_id="c1", conid=None):
    peer = None if conid is None else f"127.0.0.20:{40000 + conid}"
    return RegisterRequest(number="1000", transport=transport,
                           source=f"sip:127.0.0.20:5062;transport={transport}",
                           socket="udp:127.0.0.1:5060", conid=conid, peer=peer, contacts=contacts,
                           expires=expires, call_id=call_id, cseq=cseq, node="n1")


def register(req, stored=None, line_type="ua", max_contacts=5):
    return process_register(req, line_type, stored or {}, NOW, max_contacts)


def test_expires_above_maximum_is_shortened_and_listed():
    result = register(request(["<sip:1000@127.0.0.20:5062>"], expires="86400"))
    assert result.code == 200
    assert result.headers == ["Contact: <sip:1000@127.0.0.20:5062>;expires=3600"]


def test_expires_below_minimum_gets_423_with_min_expires():
    result = register(request(["<sip:1000@127.0.0.20:5062>"], expires="10"))
    assert (result.code, result.headers, result.upserts) == (423, ["Min-Expires: 60"], {})


@pytest.mark.parametrize("contacts,expires", [
    (["<sip:1000@h"], "60"), (["<sip:1000@h>"], "abc"), (["<sip:1000@h>;expires=-1"], None),
    (["*"], "60"), (["*", "<sip:1000@h>"], "0"), (["<mailto:x@y>"], "60")])
def test_malformed_register_gets_400_and_changes_nothing(contacts, expires):
    result = register(request(contacts, expires))
    assert result.code == 400 and not result.upserts and not result.removals


def test_contact_param_expires_wins_over_header():
    result = register(request(["<sip:a@h>;expires=120, <sip:b@h>"], expires="300"))
    assert sorted(result.headers) == ["Contact: <sip:a@h>;expires=120",
                                      "Contact: <sip:b@h>;expires=300"]


def test_wildcard_removes_only_the_requesting_device_class():
    stored = register(request(["<sip:desk@h>"], expires="600")).upserts
    stored.update(register(request(["<sip:tab@x.invalid;transport=ws>"], "600",
                                   transport="ws", call_id="w")).upserts)
    result = register(request(["*"], "0", transport="ws", call_id="w", cseq=2), stored)
    assert result.code == 200
    assert result.removals == ["webrtc|sip:tab@x.invalid;transport=ws"]
    assert result.headers == ["Contact: <sip:desk@h>;expires=600"]


def test_class_not_allowed_by_line_type_is_403():
    assert register(request(["<sip:a@x.invalid;transport=ws>"], "600", transport="ws"),
                    line_type="sip").code == 403
    assert register(request(["<sip:a@h>"], "600"), line_type="webrtc").code == 403


def test_one_contact_too_many_is_403_and_nothing_changes():
    stored = {}
    for n in range(5):
        stored.update(register(request([f"<sip:{n}@h>"], "600", call_id=f"c{n}"), stored).upserts)
    result = register(request(["<sip:6@h>"], "600", call_id="c6"), stored)
    assert result.code == 403 and not result.upserts and not result.removals
    # The other class still has room of its own.
    assert register(request(["<sip:t@x.invalid;transport=ws>"], "600", transport="ws"),
                    stored).code == 200


def test_instance_identifies_a_browser_binding_across_contact_changes():
    first = register(request(['<sip:a@x.invalid;transport=ws>;+sip.instance="<urn:uuid:1>";reg-id=1'],
                             "600", transport="ws"))
    second = register(request(['<sip:b@y.invalid;transport=ws>;+sip.instance="<urn:uuid:1>";reg-id=1'],
                              "600", transport="ws", cseq=2), first.upserts)
    assert list(second.upserts) == list(first.upserts)
    assert second.headers == ['Contact: <sip:b@y.invalid;transport=ws>;+sip.instance="<urn:uuid:1>";reg-id=1;expires=600']


def test_late_older_cseq_does_not_undo_newer_binding():
    stored = register(request(["<sip:a@h>"], "600", cseq=5)).upserts
    result = register(request(["<sip:a@h>"], "0", cseq=4), stored)
    assert result.code == 200 and result.removals == []


def test_expired_bindings_are_purged_and_not_listed():
    stored = register(request(["<sip:old@h>"], "60")).upserts
    later = process_register(request(["<sip:new@h>"], "600", call_id="n"), "ua", stored,
                             NOW + 61, 5)
    assert later.removals == ["deskphone|sip:old@h"]
    assert later.headers == ["Contact: <sip:new@h>;expires=600"]


def test_only_a_change_that_may_ring_the_next_call_elsewhere_reroutes():
    """Such a 200 waits for every process's cache to hear of it (store.acknowledged);
    a plain refresh, most of the REGISTER load, does not."""
    stored = register(request(["<sip:a@h>"], "600")).upserts
    assert register(request(["<sip:a@h>"], "600")).reroutes                    # new
    assert not register(request(["<sip:a@h>"], "600", cseq=2), stored).reroutes    # refresh
    assert register(request(["<sip:a@h>"], "0", cseq=2), stored).reroutes        # logout
    assert register(request(["<sip:a@h>;+sip.instance=\"<urn:uuid:1>\""], "600", cseq=2),
                    stored).reroutes                                          # new params
    moved = request(["<sip:a@h>"], "600", cseq=2)
    moved.source = "sip:127.0.0.21:5062;transport=udp"
    assert register(moved, stored).reroutes                                   # NAT rebinding
    near_expiry = process_register(request(["<sip:a@h>"], "600", cseq=2), "ua", stored,
                                   NOW + 600 - registrar.REFRESH_MARGIN / 2, 5)
    assert near_expiry.reroutes
    # an expired binding purged, and a logout of a binding never stored: nothing live moves
    purge = process_register(request(["<sip:b@h>"], "0", call_id="b"), "ua", stored,
                             NOW + 601, 5)
    assert purge.removals == ["deskphone|sip:a@h", "deskphone|sip:b@h"] and not purge.reroutes


def test_store_applies_and_connection_close_removes_only_its_bindings(redis_url, r):
    now = time.time()
    desk = process_register(request(["<sip:desk@h>"], "600"), "ua", {}, now, 5)
    registrar.apply("1000", desk)
    tab = process_register(request(["<sip:tab@x.invalid;transport=ws>"], "600", transport="ws",
                                   call_id="w", conid=7), "ua", {}, now, 5)
    registrar.apply("1000", tab)
    assert r.ttl(keyspace.contacts_key("1000")) > 600
    assert registrar.registered_classes(r, "1000", now) == {"webrtc": True, "deskphone": True}
    assert r.zcard("ua:reg:webrtc") == r.zcard("ua:reg:deskphone") == 1
    assert registrar.drop_connection("n1", "127.0.0.20:40007") == ["1000"]
    assert registrar.registered_classes(r, "1000", now) == {"webrtc": False, "deskphone": True}
    # the close also took the browser's binding out of the registrations gauge
    assert (r.zcard("ua:reg:webrtc"), r.zcard("ua:reg:deskphone")) == (0, 1)


def test_binding_is_stored_compact_and_read_back_whole(redis_url, r):
    now = time.time()
    tab = process_register(request(['<sip:tab@x.invalid;transport=ws>;+sip.instance="<urn:uuid:1>"'],
                                   "600", transport="ws", conid=7), "ua", {}, now, 5)
    registrar.apply("1000", tab)
    (fld, written), = tab.upserts.items()
    raw = r.hget(keyspace.contacts_key("1000"), fld)
    assert isinstance(codec.unpack(raw), list)          # positions, not names
    assert registrar.contacts_of("1000", now) == {fld: {**written, "field": fld}}
    # a binding stored as a map (before the compact form) is still read
    r.hset(keyspace.contacts_key("1000"), "deskphone|sip:old@h", codec.pack(
        {**written, "class": "deskphone", "uri": "sip:old@h"}))
    assert registrar.contacts_of("1000", now)["deskphone|sip:old@h"]["uri"] == "sip:old@h"


def test_close_of_an_old_connection_spares_a_binding_moved_to_a_new_one(redis_url, r):
    NOW = time.time()  # noqa: N806 (Redis expires keys by the real clock)
    first = process_register(request(['<sip:a@x.invalid;transport=ws>;+sip.instance="<urn:uuid:1>"'],
                                     "600", transport="ws", conid=7), "ua", {}, NOW, 5)
    registrar.apply("1000", first)
    moved = process_register(request(['<sip:b@x.invalid;transport=ws>;+sip.instance="<urn:uuid:1>"'],
                                     "600", transport="ws", conid=9, cseq=2), "ua",
                             first.upserts, NOW, 5)
    registrar.apply("1000", moved)
    assert registrar.drop_connection("n1", "127.0.0.20:40007") == []
    assert registrar.registered_classes(r, "1000", NOW)["webrtc"] is True
    assert registrar.drop_node_connections("n1") == 1
    assert registrar.registered_classes(r, "1000", NOW)["webrtc"] is False


def test_register_writes_in_one_round_trip_and_ttl_only_grows(redis_url, r, monkeypatch):
    now = time.time()
    long = process_register(request(["<sip:a@h>"], "3600"), "ua", {}, now, 5)
    sent = []
    execute = type(r).execute_command
    monkeypatch.setattr(type(r), "execute_command",
                        lambda self, *args, **kw: sent.append(args[0]) or execute(self, *args, **kw))
    registrar.apply("1000", long)
    assert sent == []                               # a pipeline: one MULTI ... EXEC round trip
    monkeypatch.undo()
    assert 3600 < r.ttl(keyspace.contacts_key("1000")) <= 3600 + registrar.KEY_GRACE_SECONDS
    short = process_register(request(["<sip:b@h>"], "60", call_id="b"), "ua", {}, now, 5)
    registrar.apply("1000", short)                  # saw only its own binding
    assert r.ttl(keyspace.contacts_key("1000")) > 3600


def test_a_200_that_reroutes_waits_until_every_cache_heard_and_a_refresh_does_not(
        redis_url, monkeypatch):
    """store.acknowledged's round trip comes after the write (tests/redis/test_store.py
    shows why it must)."""
    sent, run = [], wire.run
    monkeypatch.setattr(wire, "run", lambda *commands: (
        sent.append([c[0] for c in commands]), run(*commands))[1])
    now = time.time()
    first = process_register(request(["<sip:a@h>"], "600"), "ua", {}, now, 5)
    registrar.apply("1000", first)
    assert [c[0] for c in sent] == ["MULTI", "PING"]
    sent.clear()
    registrar.apply("1000", process_register(request(["<sip:a@h>"], "600", cseq=2), "ua",
                                             registrar.load("1000")[2], now, 5))
    assert [c[0] for c in sent] == ["HMGET", "MULTI"]        # the load, then the write
