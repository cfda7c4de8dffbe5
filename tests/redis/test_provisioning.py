"""lib.users.provisioning against a real Redis: validation, atomicity, DID and address uniqueness."""
import threading

import msgpack
import pytest

from lib.store import codec, keyspace
from lib.users.forward_rules import DEFAULT_FORWARDS, normalize_forwards, validate_forwards
from lib.users.profiles import default_memberships, ha1, profile_of
from lib.users.provisioning import Provisioning
from lib.users.validation import BatchError, Conflict, Invalid, NotFound, parse_sip_uri, validate_mds, validate_user

# Counts provisioning changes (lib/store): a store emptied of users and MDS keeps it.
VERSION = keyspace.PROVISIONING_VERSION_KEY.encode()

DOMAIN = "ua.test"


@pytest.fixture
def prov(r):
    return Provisioning(r, DOMAIN)


def user(**over):
    body = {"name": "Alice", "password": "secret", "line_type": "ua", "mds": None,
            "dids": [], "ring_seconds": 30}
    body.update(over)
    return body


def snapshot(r):
    """Every key with its full content, to prove a refused write changed nothing."""
    out = {}
    for key in sorted(r.keys("*")):
        kind = r.type(key)
        if kind == b"hash":
            out[key] = r.hgetall(key)
        elif kind == b"set":
            out[key] = r.smembers(key)
        elif kind == b"string":
            out[key] = r.get(key)
        else:
            out[key] = kind
    return out


# --- pure validation ---------------------------------------------------------------------

@pytest.mark.parametrize("number", ["", "12a", "+1000", " 1000", "1" * 21, "١٢٣"])
def test_bad_numbers(number):
    with pytest.raises(Invalid):
        validate_user(number, user(), new=True)


def test_defaults_filled():
    profile, password = validate_user("1000", {"name": "A", "password": "p",
                                               "line_type": "sip"}, new=True)
    assert password == "p"
    assert profile == {"number": "1000", "name": "A", "line_type": "sip", "mds": None,
                       "dids": [], "ring_seconds": 30,
                       "memberships": {"groups": [], "queues": [], "pickup_groups": [],
                                       "paging_groups": [], "callfilters": [],
                                       "agent": None, "switchboard": False}}


@pytest.mark.parametrize("over,word", [
    ({"name": 5}, "name"),
    ({"password": ""}, "password"),
    ({"password": 123}, "password"),
    ({"line_type": "pstn"}, "line_type"),
    ({"line_type": None}, "line_type"),
    ({"mds": "bad name!"}, "mds"),
    ({"dids": "+331"}, "dids"),
    ({"dids": ["+33-1"]}, "DID"),
    ({"dids": ["++331"]}, "DID"),
    ({"dids": ["+331", "+331"]}, "twice"),
    ({"ring_seconds": 0}, "ring_seconds"),
    ({"ring_seconds": 301}, "ring_seconds"),
    ({"ring_seconds": 30.5}, "ring_seconds"),
    ({"ring_seconds": True}, "ring_seconds"),
    ({"ring_seconds": "30"}, "ring_seconds"),
    ({"memberships": []}, "memberships"),
    ({"memberships": {"groups": "sales"}}, "groups"),
    ({"memberships": {"colour": []}}, "colour"),
    ({"memberships": {"switchboard": 1}}, "switchboard"),
    ({"memberships": {"agent": 7}}, "agent"),
    ({"surname": "x"}, "surname"),
    ({"number": "1001"}, "number"),
])
def test_invalid_fields(over, word):
    with pytest.raises(Invalid) as exc:
        validate_user("1000", user(**over), new=True)
    assert word in exc.value.message


def test_password_required_on_create_only():
    body = user()
    del body["password"]
    with pytest.raises(Invalid, match="password"):
        validate_user("1000", body, new=True)
    assert validate_user("1000", body, new=False)[1] is None


def test_ring_seconds_bounds_accepted():
    assert validate_user("1000", user(ring_seconds=1), new=True)[0]["ring_seconds"] == 1
    assert validate_user("1000", user(ring_seconds=300), new=True)[0]["ring_seconds"] == 300


@pytest.mark.parametrize("key,value,word", [
    ("groups", ["sales"], "groups"),
    ("queues", ["q1"], "queues"),
    ("pickup_groups", ["p"], "pickup"),
    ("paging_groups", ["pg"], "paging"),
    ("callfilters", ["boss"], "boss/secretary"),
    ("agent", "42", "agent"),
    ("switchboard", True, "switchboard"),
])
def test_ua_refuses_each_membership(key, value, word):
    with pytest.raises(Invalid) as exc:
        validate_user("1000", user(memberships={key: value}), new=True)
    assert word in exc.value.message
    assert "Unique Account" in exc.value.message
    # The same membership is fine on a sip or webrtc line.
    for line_type in ("sip", "webrtc"):
        profile, _ = validate_user("1000", user(line_type=line_type,
                                                memberships={key: value}), new=True)
        assert profile["memberships"][key] == value


def test_ua_membership_error_names_first_feature():
    with pytest.raises(Invalid) as exc:
        validate_user("1000", user(memberships={"switchboard": True, "queues": ["q"]}),
                      new=True)
    assert exc.value.message.startswith("queues")


@pytest.mark.parametrize("uri,expected", [
    ("sip:10.0.0.1:5060", ("10.0.0.1", 5060)),
    ("sip:mds1.example.com:5070", ("mds1.example.com", 5070)),
    ("sip:mds1", ("mds1", None)),
    ("sip:[2001:db8::1]:5060", ("2001:db8::1", 5060)),
])
def test_sip_uri_ok(uri, expected):
    assert parse_sip_uri(uri) == expected


@pytest.mark.parametrize("uri", ["", "http://x:5060", "sip:", "sip:host:0", "sip:host:70000",
                                 "sip:host:port", "sip:u@host:5060", "sip:host:5060;transport=tcp",
                                 "sip:[2001:db8::1:5060", "sip:bad_host:5060", 5060, None])
def test_sip_uri_bad(uri):
    with pytest.raises(Invalid):
        parse_sip_uri(uri)


def test_mds_validation():
    assert validate_mds("mds-1.a_b", {"uri": "sip:h:1", "addresses": ["10.0.0.1", "::1"]}) == \
        {"uri": "sip:h:1", "addresses": ["10.0.0.1", "::1"]}
    assert validate_mds("m", {"uri": "sip:h:1"})["addresses"] == []
    # IPv6 literals are stored in their canonical (compressed) form.
    assert validate_mds("m", {"uri": "sip:h:1", "addresses": ["2001:DB8:0:0::1"]})[
        "addresses"] == ["2001:db8::1"]
    for name in ("", "a" * 65, "a/b", "a b", "é"):
        with pytest.raises(Invalid):
            validate_mds(name, {"uri": "sip:h:1"})
    for body in ({}, {"uri": "sip:h:1", "addresses": ["10.0.0.300"]},
                 {"uri": "sip:h:1", "addresses": "10.0.0.1"},
                 {"uri": "sip:h:1", "addresses": ["10.0.0.1", "10.0.0.1"]},
                 {"uri": "sip:h:1", "addresses": [1]},
                 {"uri": "sip:h:1", "up": True},
                 {"uri": "sip:h:1", "name": "other"}):
        with pytest.raises(Invalid):
            validate_mds("m", body)


# --- users in Redis ----------------------------------------------------------------------

def test_a_profile_is_stored_without_its_defaults_and_read_back_whole(prov, r):
    stored = lambda: msgpack.unpackb(r.hget(keyspace.user_key("1000"), "profile"))  # noqa: E731
    _, profile = prov.put_user("1000", user())
    assert stored() == {"number": "1000", "name": "Alice", "line_type": "ua"}
    assert prov.get_user("1000") == profile
    assert profile["memberships"] == default_memberships() and profile["ring_seconds"] == 30
    r.hset(keyspace.user_key("1000"), "profile", msgpack.packb(profile))   # as stored before
    assert prov.get_user("1000") == profile
    _, profile = prov.put_user("1000", user(line_type="sip", ring_seconds=20,
                                            memberships={"groups": ["sales"]}))
    assert stored() == {"number": "1000", "name": "Alice", "line_type": "sip",
                        "ring_seconds": 20, "memberships": {"groups": ["sales"]}}
    assert prov.get_user("1000") == profile and profile["memberships"]["queues"] == []


def test_create_stores_profile_ha1_and_indexes(prov, r):
    created, profile = prov.put_user("1000", user(dids=["+33123456789"]))
    assert created
    h = r.hgetall(keyspace.user_key("1000"))
    assert set(h) == {b"profile", b"ha1"}
    assert profile_of(h[b"profile"]) == profile
    assert "password" not in profile
    assert h[b"ha1"].decode() == ha1("1000", DOMAIN, "secret")
    assert r.get("ua:did:+33123456789") == b"1000"
    assert r.smembers("ua:users") == {b"1000"}
    assert b"secret" not in b"".join(h.values())


def test_update_keeps_ha1_without_password_and_keeps_device(prov, r):
    prov.put_user("1000", user())
    prov.set_device("1000", "deskphone")
    body = user(name="Alice B", line_type="sip")
    del body["password"]
    created, profile = prov.put_user("1000", body)
    assert not created and profile["name"] == "Alice B"
    assert r.hget(keyspace.user_key("1000"), "ha1").decode() == ha1("1000", DOMAIN, "secret")
    assert r.hget(keyspace.user_key("1000"), "device") == b"deskphone"
    prov.put_user("1000", user(password="new"))
    assert r.hget(keyspace.user_key("1000"), "ha1").decode() == ha1("1000", DOMAIN, "new")


def test_update_replaces_dids(prov, r):
    prov.put_user("1000", user(dids=["+331", "+332"]))
    prov.put_user("1000", user(dids=["+332", "+333"]))
    assert r.get("ua:did:+331") is None
    assert r.get("ua:did:+332") == b"1000"
    assert r.get("ua:did:+333") == b"1000"
    prov.put_user("1000", user(dids=[]))
    assert r.keys("ua:did:*") == []


def test_did_taken_by_other_user_is_409_and_changes_nothing(prov, r):
    prov.put_user("1000", user(dids=["+331"]))
    prov.put_user("1001", user(name="Bob", dids=["+332"]))
    before = snapshot(r)
    with pytest.raises(Conflict, match=r"\+331.*1000"):
        prov.put_user("1001", user(name="Bobby", dids=["+332", "+331"], password="other"))
    with pytest.raises(Conflict):
        prov.put_user("1002", user(dids=["+331"]))
    assert snapshot(r) == before


def test_did_and_number_cannot_collide(prov, r):
    prov.put_user("1000", user(dids=["2000"]))
    with pytest.raises(Conflict, match="2000"):
        prov.put_user("2000", user())
    with pytest.raises(Conflict, match="number"):
        prov.put_user("1001", user(dids=["1000"]))
    # A user's own number as its DID is harmless.
    prov.put_user("1001", user(dids=["1001"]))


def test_refused_update_changes_nothing(prov, r):
    prov.put_mds("mds1", {"uri": "sip:10.0.0.1:5060", "addresses": ["10.0.0.1"]})
    prov.put_user("1000", user(line_type="sip", mds="mds1", dids=["+331"],
                               memberships={"groups": ["sales"]}))
    before = snapshot(r)
    bad_updates = [
        user(line_type="ua", memberships={"groups": ["sales"]}, dids=["+339"]),
        user(mds="nope", dids=["+339"]),
        user(ring_seconds=1000, password="changed"),
        user(dids=["+339", "x"]),
        {"name": "A", "line_type": "ua", "extra": 1},
    ]
    for body in bad_updates:
        with pytest.raises(Invalid):
            prov.put_user("1000", body)
    assert snapshot(r) == before


def test_unknown_mds_refused(prov):
    with pytest.raises(Invalid, match="unknown MDS"):
        prov.put_user("1000", user(mds="mds9"))


def test_delete_user_removes_every_key(prov, r):
    prov.put_user("1000", user(dids=["+331", "+332"]))
    prov.put_user("1001", user(dids=["+333"]))
    prov.set_device("1000", "deskphone")
    r.hset(keyspace.contacts_key("1000"), "webrtc|x", b"c")
    prov.delete_user("1000")
    assert sorted(r.keys("*")) == [b"ua:did:+333", VERSION, b"ua:user:{1001}", b"ua:users"]
    assert r.smembers("ua:users") == {b"1001"}
    with pytest.raises(NotFound):
        prov.delete_user("1000")
    with pytest.raises(NotFound):
        prov.delete_user("abc")


def test_list_users_sorted_numerically(prov):
    for n in ("200", "1000", "30"):
        prov.put_user(n, user())
    assert [u["number"] for u in prov.list_users()] == ["30", "200", "1000"]


def test_check_password(prov):
    prov.put_user("1000", user())
    assert prov.check_password("1000", "secret")["number"] == "1000"
    assert prov.check_password("1000", "wrong") is None
    assert prov.check_password("1001", "secret") is None
    assert prov.check_password("x", "secret") is None


def test_device_selection(prov, r):
    prov.put_user("1000", user())
    assert prov.get_device("1000")[1] == "webrtc"          # never set
    prov.set_device("1000", "deskphone")
    assert prov.get_device("1000")[1] == "deskphone"
    with pytest.raises(Invalid):
        prov.set_device("1000", "phone")
    prov.put_user("1001", user(line_type="sip"))
    with pytest.raises(Conflict):
        prov.set_device("1001", "deskphone")
    assert r.hget(keyspace.user_key("1001"), "device") is None
    with pytest.raises(NotFound):
        prov.set_device("1002", "deskphone")
    assert not r.exists(keyspace.user_key("1002"))


# --- batches (CSV import) ----------------------------------------------------------------

def test_batch_all_or_nothing(prov, r):
    prov.put_user("1000", user(dids=["+331"]))
    before = snapshot(r)
    with pytest.raises(BatchError) as exc:
        prov.put_users([("1001", user(), None),
                        ("1002", user(memberships={"queues": ["q"]}), None),
                        ("1003", user(dids=["+331"]), None),
                        ("1004", {"name": "x", "line_type": "ua"}, None)])
    assert [i for i, _ in exc.value.errors] == [1, 3]   # state checks after pure ones
    assert snapshot(r) == before
    with pytest.raises(BatchError) as exc:
        prov.put_users([("1001", user(), None), ("1003", user(dids=["+331"]), None)])
    assert [(i, e.status) for i, e in exc.value.errors] == [(1, 409)]
    assert snapshot(r) == before


def test_batch_with_ha1_and_did_move(prov, r):
    prov.put_user("1000", user(dids=["+331"]))
    digest = ha1("1001", DOMAIN, "pw")
    body = user()
    del body["password"]
    res = prov.put_users([("1000", {**body, "dids": []}, None),
                          ("1001", {**body, "dids": ["+331"]}, digest.upper())])
    assert [created for created, _ in res] == [False, True]
    assert r.get("ua:did:+331") == b"1001"
    assert prov.check_password("1001", "pw")
    with pytest.raises(BatchError):
        prov.put_users([("1002", body, "nothex")])
    with pytest.raises(BatchError):
        prov.put_users([("1002", user(dids=["+35"]), None), ("1003", user(dids=["+35"]), None)])
    with pytest.raises(BatchError):
        prov.put_users([("1002", user(), None), ("1002", user(), None)])


def test_concurrent_claims_of_one_did(prov, r, redis_url):
    """Many writers race for one DID: exactly one wins, the others get 409."""
    import redis as redis_mod
    results = []

    def claim(n):
        c = redis_mod.Redis.from_url(redis_url)
        try:
            Provisioning(c, DOMAIN).put_user(str(2000 + n), user(dids=["+3399"]))
            results.append("ok")
        except Conflict:
            results.append("conflict")
        finally:
            c.close()

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["conflict"] * 7 + ["ok"]
    owner = r.get("ua:did:+3399").decode()
    assert profile_of(r.hget(keyspace.user_key(owner), "profile"))["dids"] == ["+3399"]
    assert r.scard("ua:users") == 1


# --- MDS -----------------------------------------------------------------------------------

def test_mds_create_update_addresses(prov, r):
    assert prov.put_mds("mds1", {"uri": "sip:10.0.0.1:5060",
                                 "addresses": ["10.0.0.1", "10.0.0.2"]})[0]
    assert r.hgetall("ua:mds:addr") == {b"10.0.0.1": b"mds1", b"10.0.0.2": b"mds1"}
    created, rec = prov.put_mds("mds1", {"uri": "sip:10.0.0.1:5070",
                                         "addresses": ["10.0.0.2", "10.0.0.3"]})
    assert not created and rec["uri"] == "sip:10.0.0.1:5070"
    assert r.hgetall("ua:mds:addr") == {b"10.0.0.2": b"mds1", b"10.0.0.3": b"mds1"}
    assert msgpack.unpackb(r.hget("ua:mds", "mds1")) == {
        "uri": "sip:10.0.0.1:5070", "addresses": ["10.0.0.2", "10.0.0.3"]}


def test_mds_address_taken_is_400_and_changes_nothing(prov, r):
    prov.put_mds("mds1", {"uri": "sip:10.0.0.1:5060", "addresses": ["10.0.0.1"]})
    prov.put_mds("mds2", {"uri": "sip:10.0.0.2:5060", "addresses": ["10.0.0.2"]})
    before = snapshot(r)
    with pytest.raises(Invalid, match="10.0.0.1.*mds1"):
        prov.put_mds("mds2", {"uri": "sip:10.0.0.2:5060", "addresses": ["10.0.0.9", "10.0.0.1"]})
    with pytest.raises(Invalid):
        prov.put_mds("mds3", {"uri": "sip:10.0.0.3:5060", "addresses": ["10.0.0.2"]})
    assert snapshot(r) == before


def test_mds_delete(prov, r):
    prov.put_mds("mds1", {"uri": "sip:10.0.0.1:5060", "addresses": ["10.0.0.1"]})
    prov.put_mds("mds2", {"uri": "sip:10.0.0.2:5060", "addresses": ["10.0.0.2"]})
    prov.put_user("1000", user(mds="mds1"))
    before = snapshot(r)
    with pytest.raises(Conflict, match="1000"):
        prov.delete_mds("mds1")
    assert snapshot(r) == before
    prov.put_user("1000", user(mds="mds2"))
    prov.delete_mds("mds1")
    assert r.hkeys("ua:mds") == [b"mds2"]
    assert r.hgetall("ua:mds:addr") == {b"10.0.0.2": b"mds2"}
    with pytest.raises(NotFound):
        prov.delete_mds("mds1")
    prov.delete_user("1000")
    prov.delete_mds("mds2")
    assert r.keys("*") == [VERSION]


# --- forwarding rules --------------------------------------------------------------------

OFF = {"enabled": False, "destination": None}


def test_default_forwards_shape():
    assert DEFAULT_FORWARDS == {"unconditional": OFF, "busy": OFF, "noanswer": OFF,
                                "dnd": False}
    got = normalize_forwards(None)
    assert got == DEFAULT_FORWARDS
    got["busy"]["enabled"] = True           # a copy: the module default is untouched
    assert DEFAULT_FORWARDS["busy"]["enabled"] is False
    assert normalize_forwards(None) == DEFAULT_FORWARDS


def test_normalize_forwards_reads_stored_bytes_and_dicts():
    full = {"unconditional": {"enabled": False, "destination": "2000"},
            "busy": {"enabled": True, "destination": "voicemail"},
            "noanswer": {"enabled": True, "destination": "+33123456789"}, "dnd": True}
    assert normalize_forwards(codec.pack(full)) == full
    assert normalize_forwards(full) == full
    assert normalize_forwards(bytearray(codec.pack(full))) == full
    # Partial or malformed values fall back to the defaults, never raise.
    assert normalize_forwards({"busy": {"enabled": True, "destination": "2000"}}) == \
        {**DEFAULT_FORWARDS, "busy": {"enabled": True, "destination": "2000"}}
    for junk in (b"\xc1", b"", codec.pack([1, 2]), codec.pack("x"), 42, [], "forwards",
                 {"busy": None, "dnd": "yes"}, {"busy": {"enabled": "yes"}}):
        assert normalize_forwards(junk) == DEFAULT_FORWARDS, junk
    # An enabled rule always has a valid destination.
    got = normalize_forwards({"busy": {"enabled": True, "destination": None},
                              "noanswer": {"enabled": True, "destination": "sip:x@y"},
                              "unconditional": {"enabled": 1, "destination": "2000"}})
    assert got["busy"] == OFF and got["noanswer"] == OFF
    assert got["unconditional"] == {"enabled": False, "destination": "2000"}


def test_validate_forwards_fills_defaults():
    assert validate_forwards("1000", {}) == DEFAULT_FORWARDS
    assert validate_forwards("1000", {"busy": {"enabled": False}, "dnd": True}) == \
        {**DEFAULT_FORWARDS, "dnd": True}
    for dest in ("voicemail", "2000", "+33123456789", "*98", "#1*2", "0", "9" * 32,
                 "+" + "1" * 32, "10000", "100"):
        got = validate_forwards("1000", {"noanswer": {"enabled": True, "destination": dest}})
        assert got["noanswer"] == {"enabled": True, "destination": dest}


@pytest.mark.parametrize("body,word", [
    ([], "object"),
    (None, "object"),
    ({"always": OFF}, "always"),
    ({"busy": OFF, "extra": 1}, "extra"),
    ({"busy": None}, "busy"),
    ({"busy": True}, "busy"),
    ({"busy": "2000"}, "busy"),
    ({"busy": {"destination": "2000"}}, "busy.enabled"),
    ({"busy": {"enabled": None}}, "busy.enabled"),
    ({"busy": {"enabled": 1, "destination": "2000"}}, "busy.enabled"),
    ({"busy": {"enabled": "true", "destination": "2000"}}, "busy.enabled"),
    ({"busy": {"enabled": False, "destination": "2000", "delay": 5}}, "busy.delay"),
    ({"busy": {"enabled": True}}, "busy is enabled but has no destination"),
    ({"noanswer": {"enabled": True, "destination": None}}, "noanswer is enabled"),
    ({"unconditional": {"enabled": True, "destination": ""}}, "unconditional.destination"),
    ({"busy": {"enabled": True, "destination": 2000}}, "busy.destination"),
    ({"busy": {"enabled": True, "destination": "Voicemail"}}, "busy.destination"),
    ({"busy": {"enabled": True, "destination": "sip:2000@x"}}, "busy.destination"),
    ({"busy": {"enabled": True, "destination": "20 00"}}, "busy.destination"),
    ({"busy": {"enabled": True, "destination": "2000\n"}}, "busy.destination"),
    ({"busy": {"enabled": True, "destination": "++2000"}}, "busy.destination"),
    ({"busy": {"enabled": True, "destination": "2000+"}}, "busy.destination"),
    ({"busy": {"enabled": True, "destination": "+"}}, "busy.destination"),
    ({"busy": {"enabled": True, "destination": "1" * 33}}, "busy.destination"),
    ({"busy": {"enabled": True, "destination": "١٢٣"}}, "busy.destination"),
    ({"busy": {"enabled": True, "destination": "1000"}}, "own number"),
    ({"busy": {"enabled": False, "destination": "1000"}}, "own number"),
    ({"dnd": 1}, "dnd"),
    ({"dnd": None}, "dnd"),
    ({"dnd": "false"}, "dnd"),
])
def test_validate_forwards_refuses(body, word):
    with pytest.raises(Invalid, match=word):
        validate_forwards("1000", body)


def test_forwards_store_and_replace(prov, r):
    prov.put_user("1000", user())
    assert prov.get_forwards("1000") == DEFAULT_FORWARDS
    assert r.hget(keyspace.user_key("1000"), "forwards") is None
    rules = {"unconditional": OFF, "busy": {"enabled": True, "destination": "voicemail"},
             "noanswer": {"enabled": True, "destination": "2000"}, "dnd": True}
    assert prov.set_forwards("1000", rules) == rules
    assert msgpack.unpackb(r.hget(keyspace.user_key("1000"), "forwards"), raw=False) == rules
    assert prov.get_forwards("1000") == rules
    # PUT replaces: what is left out goes back to its default.
    got = prov.set_forwards("1000", {"noanswer": {"enabled": False, "destination": "2000"}})
    assert got == {**DEFAULT_FORWARDS, "noanswer": {"enabled": False, "destination": "2000"}}
    assert msgpack.unpackb(r.hget(keyspace.user_key("1000"), "forwards"), raw=False) == got
    # A refused write changes nothing.
    before = snapshot(r)
    for body in ({"busy": {"enabled": True}}, {"dnd": "x"}, {"busy": {"enabled": True,
                                                                      "destination": "1000"}}):
        with pytest.raises(Invalid):
            prov.set_forwards("1000", body)
    assert snapshot(r) == before


def test_forwards_any_line_type_and_kept_by_user_updates(prov, r):
    rules = {"busy": {"enabled": True, "destination": "voicemail"}}
    for number, line_type in (("1000", "ua"), ("1001", "sip"), ("1002", "webrtc")):
        prov.put_user(number, user(line_type=line_type))
        assert prov.set_forwards(number, rules)["busy"]["enabled"] is True
    stored = r.hget(keyspace.user_key("1000"), "forwards")
    prov.put_user("1000", user(line_type="sip", name="Alicia"))
    prov.put_user("1000", user(line_type="ua"))
    assert r.hget(keyspace.user_key("1000"), "forwards") == stored


def test_forward_to_own_did_refused(prov, r):
    prov.put_user("1000", user(dids=["+33123456789", "5000"]))
    before = snapshot(r)
    for dest in ("+33123456789", "5000"):
        with pytest.raises(Invalid, match="DID"):
            prov.set_forwards("1000", {"noanswer": {"enabled": True, "destination": dest}})
    assert snapshot(r) == before
    prov.set_forwards("1000", {"noanswer": {"enabled": True, "destination": "33123456789"}})


def test_forwards_unknown_user(prov, r):
    for number in ("1000", "abc", ""):
        with pytest.raises(NotFound):
            prov.get_forwards(number)
        with pytest.raises(NotFound):
            prov.set_forwards(number, {"dnd": True})
    assert r.keys("*") == []


def test_delete_user_removes_forwards(prov, r):
    prov.put_user("1000", user())
    prov.set_forwards("1000", {"dnd": True})
    prov.delete_user("1000")
    assert r.keys("*") == [VERSION]
    prov.put_user("1000", user())
    assert prov.get_forwards("1000") == DEFAULT_FORWARDS
