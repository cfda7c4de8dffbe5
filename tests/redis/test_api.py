"""The API server's application (lib/web) against a real Redis: every status code, auth,
CORS, body limit, 503."""
import base64
import json
import time

import msgpack
import pytest
import redis

from lib import metrics
from lib.features import mds_health
from lib.store import keyspace
from lib.users import provisioning
from lib.users.profiles import ha1
from tests.support.apicall import ADMIN, DOMAIN, TOKEN, basic


def alice(**over):
    body = {"name": "Alice", "password": "secret", "line_type": "ua", "mds": None,
            "dids": [], "ring_seconds": 30}
    body.update(over)
    return body


@pytest.fixture
def users(call):
    """1000 (ua, password secret) and 1001 (sip, password bobpw)."""
    assert call("PUT", "/api/v1/users/1000", alice(), ADMIN).status == 201
    assert call("PUT", "/api/v1/users/1001",
                alice(name="Bob", password="bobpw", line_type="sip"), ADMIN).status == 201


def add_contact(r, number, klass, expires_in=300):
    """A live binding in the registrar's format (ua:contacts:{N} field class|key)."""
    r.hset(keyspace.contacts_key(number), f"{klass}|sip:{klass}@192.0.2.1",
           msgpack.packb({"class": klass, "expires_at": time.time() + expires_in,
                          "uri": f"sip:{klass}@192.0.2.1", "params": ""}, use_bin_type=True))


# --- health, routing, methods --------------------------------------------------------------

def test_health_ok_without_auth(call):
    resp = call("GET", "/api/v1/health")
    assert (resp.status, resp.body) == (200, {"status": "ok"})


def test_unknown_route_and_wrong_method(call):
    assert call("GET", "/api/v1/nothing", headers=ADMIN).status == 404
    assert call("GET", "/api/v2/users", headers=ADMIN).status == 404
    assert call("GET", "/index.html", headers=ADMIN).status == 404
    assert call("GET", "/api/v1/users/1000/device/x", headers=ADMIN).status == 404
    resp = call("POST", "/api/v1/users/1000", alice(), ADMIN)
    assert resp.status == 405 and "error" in resp.body
    assert resp.headers["Allow"] == "DELETE, GET, PUT, OPTIONS"
    assert call("DELETE", "/api/v1/health").status == 405
    assert call("PATCH", "/api/v1/users", headers=ADMIN).status == 405


def test_trailing_slash_and_query_string(call, users):
    assert call("GET", "/api/v1/users/", headers=ADMIN).status == 200
    assert call("GET", "/api/v1/users/1000?x=1", headers=ADMIN).status == 200


# --- users ---------------------------------------------------------------------------------

def test_user_crud(call, r):
    resp = call("PUT", "/api/v1/users/1000", alice(dids=["+33123456789"]), ADMIN)
    assert resp.status == 201
    expected = {"number": "1000", "name": "Alice", "line_type": "ua", "mds": None,
                "dids": ["+33123456789"], "ring_seconds": 30,
                "memberships": {"groups": [], "queues": [], "pickup_groups": [],
                                "paging_groups": [], "callfilters": [], "agent": None,
                                "switchboard": False}}
    assert resp.body == expected
    assert call("GET", "/api/v1/users/1000", headers=ADMIN).body == expected
    resp = call("PUT", "/api/v1/users/1000", alice(name="Alicia", number="1000"), ADMIN)
    assert resp.status == 200 and resp.body["name"] == "Alicia" and resp.body["dids"] == []
    assert [u["number"] for u in call("GET", "/api/v1/users", headers=ADMIN).body] == ["1000"]
    resp = call("DELETE", "/api/v1/users/1000", headers=ADMIN)
    assert (resp.status, resp.body) == (204, None)
    assert resp.content == b""
    assert call("GET", "/api/v1/users/1000", headers=ADMIN).status == 404
    assert call("DELETE", "/api/v1/users/1000", headers=ADMIN).status == 404
    assert call("GET", "/api/v1/users", headers=ADMIN).body == []
    assert r.keys("*") == [keyspace.PROVISIONING_VERSION_KEY.encode()]


def test_password_and_ha1_never_returned(call, r):
    bodies = [call("PUT", "/api/v1/users/1000", alice(), ADMIN).body,
              call("PUT", "/api/v1/users/1000", alice(password="other"), ADMIN).body,
              call("GET", "/api/v1/users/1000", headers=ADMIN).body,
              call("GET", "/api/v1/users", headers=ADMIN).body]
    text = json.dumps(bodies)
    digest = ha1("1000", DOMAIN, "other")
    assert r.hget(keyspace.user_key("1000"), "ha1").decode() == digest
    for secret in ("secret", "other", digest, ha1("1000", DOMAIN, "secret"), "ha1",
                   "password"):
        assert secret not in text


def test_absent_password(call):
    body = alice()
    del body["password"]
    resp = call("PUT", "/api/v1/users/1000", body, ADMIN)
    assert resp.status == 400 and "password" in resp.body["error"]
    call("PUT", "/api/v1/users/1000", alice(), ADMIN)
    assert call("PUT", "/api/v1/users/1000", body, ADMIN).status == 200
    assert call("GET", "/api/v1/users/1000/device", headers=basic("1000", "secret")).status \
        == 200


@pytest.mark.parametrize("path,body,word", [
    ("/api/v1/users/10a0", alice(), "number"),
    ("/api/v1/users/1000", alice(line_type="ua2"), "line_type"),
    ("/api/v1/users/1000", alice(ring_seconds=301), "ring_seconds"),
    ("/api/v1/users/1000", alice(ring_seconds=0), "ring_seconds"),
    ("/api/v1/users/1000", alice(mds="mds9"), "mds9"),
    ("/api/v1/users/1000", alice(dids=["0033-1"]), "DID"),
    ("/api/v1/users/1000", alice(colour="blue"), "colour"),
    ("/api/v1/users/1000", alice(number="1001"), "number"),
    ("/api/v1/users/1000", alice(password=""), "password"),
    ("/api/v1/users/1000", alice(name=None), "name"),
])
def test_user_validation_400(call, r, path, body, word):
    resp = call("PUT", path, body, ADMIN)
    assert resp.status == 400, resp.body
    assert word in resp.body["error"]
    assert r.keys("*") == []


@pytest.mark.parametrize("key,value,word", [
    ("groups", ["sales"], "groups"),
    ("queues", ["support"], "queues"),
    ("pickup_groups", ["floor1"], "group pickup"),
    ("paging_groups", ["all"], "paging"),
    ("callfilters", ["boss1"], "boss/secretary"),
    ("agent", "8000", "agent"),
    ("switchboard", True, "switchboard"),
])
def test_ua_membership_refused_per_feature(call, r, key, value, word):
    resp = call("PUT", "/api/v1/users/1000", alice(memberships={key: value}), ADMIN)
    assert resp.status == 400 and word in resp.body["error"]
    assert "Unique Account" in resp.body["error"]
    assert r.keys("*") == []
    # Allowed for a sip line; then switching that line to ua keeps the membership: refused,
    # and the stored record is unchanged.
    resp = call("PUT", "/api/v1/users/1000",
                alice(line_type="sip", memberships={key: value}), ADMIN)
    assert resp.status == 201 and resp.body["memberships"][key] == value
    before = call("GET", "/api/v1/users/1000", headers=ADMIN).body
    ha1_before = r.hget(keyspace.user_key("1000"), "ha1")
    resp = call("PUT", "/api/v1/users/1000",
                alice(line_type="ua", password="new", memberships={key: value}), ADMIN)
    assert resp.status == 400 and word in resp.body["error"]
    assert call("GET", "/api/v1/users/1000", headers=ADMIN).body == before
    assert r.hget(keyspace.user_key("1000"), "ha1") == ha1_before


def test_refused_put_changes_nothing(call, r):
    call("PUT", "/api/v1/mds/mds1", {"uri": "sip:10.0.0.1:5060", "addresses": ["10.0.0.1"]},
         ADMIN)
    call("PUT", "/api/v1/users/1000", alice(mds="mds1", dids=["+331"]), ADMIN)
    call("PUT", "/api/v1/users/1001", alice(dids=["+332"]), ADMIN)
    call("PUT", "/api/v1/users/1000/device", {"device": "deskphone"}, ADMIN)
    dump = {k: r.dump(k) for k in r.keys("*")}
    for body in (alice(dids=["+333", "+332"], password="changed"),   # DID of 1001: 409
                 alice(mds="nope", dids=["+334"]),                   # unknown MDS: 400
                 alice(dids=["+335"], ring_seconds=-1),
                 alice(line_type="ua", memberships={"queues": ["q"]}, dids=[])):
        assert call("PUT", "/api/v1/users/1000", body, ADMIN).status in (400, 409)
    assert {k: r.dump(k) for k in r.keys("*")} == dump


def test_did_uniqueness_409(call, r):
    call("PUT", "/api/v1/users/1000", alice(dids=["+33123456789"]), ADMIN)
    resp = call("PUT", "/api/v1/users/1001", alice(dids=["+33123456789"]), ADMIN)
    assert resp.status == 409
    assert "+33123456789" in resp.body["error"] and "1000" in resp.body["error"]
    assert call("GET", "/api/v1/users/1001", headers=ADMIN).status == 404
    assert r.get("ua:did:+33123456789") == b"1000"
    # Freed by an update of its owner, it can be taken.
    call("PUT", "/api/v1/users/1000", alice(dids=[]), ADMIN)
    assert call("PUT", "/api/v1/users/1001", alice(dids=["+33123456789"]), ADMIN).status == 201
    # Freed by deleting its owner too.
    call("DELETE", "/api/v1/users/1001", headers=ADMIN)
    assert call("PUT", "/api/v1/users/1000", alice(dids=["+33123456789"]), ADMIN).status == 200


# --- bad bodies ------------------------------------------------------------------------------

@pytest.mark.parametrize("raw", [b"{", b"[]", b'"x"', b"null", b"42", b"", b"  ",
                                 b"\xff\xfe{}", b'{"name": "A",}'])
def test_malformed_bodies_400(call, r, raw):
    for path in ("/api/v1/users/1000", "/api/v1/mds/m1"):
        resp = call("PUT", path, raw=raw, headers=ADMIN)
        assert resp.status == 400 and resp.body["error"]
    assert r.keys("*") == []


def test_body_over_the_limit_413(call, r):
    limit = {"UA_API_MAX_BODY": "4096"}
    body = alice(name="x" * 200)
    raw = json.dumps(body).encode()
    raw = raw[:-1] + b"," + b'"pad": "' + b"y" * 4096 + b'"}'
    resp = call("PUT", "/api/v1/users/1000", raw=raw, headers=ADMIN, env_over=limit)
    assert resp.status == 413 and "larger" in resp.body["error"]
    assert r.keys("*") == []
    # Exactly at the limit is parsed (and refused for its unknown field, not its size).
    raw = json.dumps(alice(pad="")).encode()
    raw = json.dumps(alice(pad="z" * (4096 - len(raw)))).encode()
    assert len(raw) == 4096
    resp = call("PUT", "/api/v1/users/1000", raw=raw, headers=ADMIN, env_over=limit)
    assert resp.status == 400 and "pad" in resp.body["error"]


# --- auth --------------------------------------------------------------------------------

ADMIN_ONLY = [("GET", "/api/v1/users"), ("GET", "/api/v1/users/1000"),
              ("PUT", "/api/v1/users/1000"), ("DELETE", "/api/v1/users/1000"),
              ("GET", "/api/v1/mds"), ("GET", "/api/v1/mds/m1"), ("PUT", "/api/v1/mds/m1"),
              ("DELETE", "/api/v1/mds/m1")]


@pytest.mark.parametrize("method,path", ADMIN_ONLY)
def test_admin_only_endpoints(call, users, method, path):
    body = alice() if path.startswith("/api/v1/users/") else {"uri": "sip:h:1"}
    assert call("PUT", "/api/v1/mds/m1", {"uri": "sip:h:1"}, ADMIN).status == 201
    bad = [{}, {"authorization": "Bearer wrong"}, {"authorization": f"Bearer {TOKEN}x"},
           {"authorization": "Bearer"}, {"authorization": TOKEN},
           {"authorization": f"Token {TOKEN}"}, basic("1000", "wrong"),
           basic("9999", "secret"), {"authorization": "Basic !!!"}]
    for headers in bad:
        resp = call(method, path, body, headers)
        assert resp.status == 401, (headers, resp.body)
        assert resp.headers["WWW-Authenticate"].startswith("Bearer realm=")
    # A valid user's own credentials on an admin endpoint, even about itself: 403.
    resp = call(method, path, body, basic("1000", "secret"))
    assert resp.status == 403 and "WWW-Authenticate" not in resp.headers
    assert call(method, path, body, ADMIN).status in (200, 201, 204)


def test_bearer_scheme_case_insensitive(call):
    assert call("GET", "/api/v1/users", headers={"authorization": f"bearer {TOKEN}"}).status \
        == 200


def test_no_token_configured_means_no_admin(call):
    resp = call("GET", "/api/v1/users", headers={"authorization": "Bearer "},
                env_over={"UA_API_TOKEN": ""})
    assert resp.status == 401
    resp = call("GET", "/api/v1/users", headers=ADMIN, env_over={"UA_API_TOKEN": ""})
    assert resp.status == 401


def test_per_user_endpoint_auth(call, users):
    path = "/api/v1/users/1000/device"
    # No or wrong credentials: 401 with a Basic challenge.
    for headers in ({}, basic("1000", "wrong"), basic("1000", ""), basic("9999", "x"),
                    {"authorization": "Basic " + base64.b64encode(b"1000").decode()},
                    {"authorization": "Basic"}, {"authorization": "Bearer nope"},
                    {"authorization": "Digest username=1000"}):
        resp = call("GET", path, headers=headers)
        assert resp.status == 401, headers
        assert resp.headers["WWW-Authenticate"] == f'Basic realm="{DOMAIN}", charset="UTF-8"'
    # The user itself, and the admin.
    assert call("GET", path, headers=basic("1000", "secret")).status == 200
    assert call("GET", path, headers=ADMIN).status == 200
    # A valid user about another number, existing or not: 403.
    for other in ("1000", "1002", "abc"):
        resp = call("GET", f"/api/v1/users/{other}/device", headers=basic("1001", "bobpw"))
        assert resp.status == 403, other
        resp = call("PUT", f"/api/v1/users/{other}/device", {"device": "deskphone"},
                    basic("1001", "bobpw"))
        assert resp.status == 403, other
    # The admin about an unknown number: 404.
    assert call("GET", "/api/v1/users/1002/device", headers=ADMIN).status == 404
    assert call("PUT", "/api/v1/users/1002/device", {"device": "webrtc"}, ADMIN).status == 404
    assert call("GET", "/api/v1/users/abc/device", headers=ADMIN).status == 404


def test_basic_uses_domain_in_ha1(call, users):
    """The HA1 is bound to UA_DOMAIN: the same password under another domain fails."""
    headers = basic("1000", "secret")
    assert call("GET", "/api/v1/users/1000/device", headers=headers).status == 200
    resp = call("GET", "/api/v1/users/1000/device", headers=headers,
                env_over={"UA_DOMAIN": "other.test"})
    assert resp.status == 401


def test_basic_password_with_colon_and_utf8(call):
    call("PUT", "/api/v1/users/1000", alice(password="pa:ss wörd"), ADMIN)
    assert call("GET", "/api/v1/users/1000/device",
                headers=basic("1000", "pa:ss wörd")).status == 200


def test_password_change_applies_to_basic(call, users):
    call("PUT", "/api/v1/users/1000", alice(password="new"), ADMIN)
    assert call("GET", "/api/v1/users/1000/device", headers=basic("1000", "secret")).status \
        == 401
    assert call("GET", "/api/v1/users/1000/device", headers=basic("1000", "new")).status \
        == 200


@pytest.fixture
def counted(monkeypatch):
    """The metrics the API server counts: [(family, *labels)]."""
    seen = []
    monkeypatch.setattr(metrics, "count", lambda family, *labels: seen.append((family, *labels)))
    return seen


def test_auth_failures_are_counted(call, users, counted):
    call("GET", "/api/v1/users", headers={"authorization": "Bearer x"})
    call("GET", "/api/v1/users/1000/device", headers=basic("1000", "x"))
    call("GET", "/api/v1/users", headers=ADMIN)
    assert counted == [("ua_auth_failures_total", "api")] * 2


# --- device selection --------------------------------------------------------------------

def test_device_get_never_set_is_webrtc(call, users):
    resp = call("GET", "/api/v1/users/1000/device", headers=basic("1000", "secret"))
    assert resp.status == 200
    assert resp.body == {"selected": "webrtc", "effective": None, "reason": "none_registered",
                         "registered": {"webrtc": False, "deskphone": False}}


def test_device_put_and_status(call, users, r):
    me = basic("1000", "secret")
    add_contact(r, "1000", "deskphone")
    resp = call("GET", "/api/v1/users/1000/device", headers=me)
    assert resp.body == {"selected": "webrtc", "effective": "deskphone", "reason": "logged_out",
                         "registered": {"webrtc": False, "deskphone": True}}
    add_contact(r, "1000", "webrtc")
    resp = call("GET", "/api/v1/users/1000/device", headers=me)
    assert (resp.body["effective"], resp.body["reason"]) == ("webrtc", "selected")
    resp = call("PUT", "/api/v1/users/1000/device", {"device": "deskphone"}, me)
    assert resp.status == 200
    assert resp.body == {"selected": "deskphone", "effective": "deskphone", "reason": "selected",
                         "registered": {"webrtc": True, "deskphone": True}}
    assert r.hget(keyspace.user_key("1000"), "device") == b"deskphone"
    assert call("GET", "/api/v1/users/1000/device", headers=ADMIN).body == resp.body
    # Only the webrtc device registered, deskphone selected: the other rings.
    r.delete(keyspace.contacts_key("1000"))
    add_contact(r, "1000", "webrtc")
    resp = call("GET", "/api/v1/users/1000/device", headers=me)
    assert (resp.body["effective"], resp.body["reason"]) == ("webrtc", "selected_unavailable")
    # An expired binding does not count.
    r.delete(keyspace.contacts_key("1000"))
    add_contact(r, "1000", "webrtc", expires_in=-1)
    resp = call("GET", "/api/v1/users/1000/device", headers=me)
    assert resp.body["registered"] == {"webrtc": False, "deskphone": False}
    # The context's `now` is what the registrar judges liveness with.
    resp = call("GET", "/api/v1/users/1000/device", headers=me, now=time.time() - 3600)
    assert resp.body["registered"]["webrtc"] is True
    resp = call("PUT", "/api/v1/users/1000/device", {"device": "webrtc"}, ADMIN)
    assert resp.status == 200 and resp.body["selected"] == "webrtc"


@pytest.mark.parametrize("body", [{"device": "phone"}, {"device": None}, {}, {"device": 1},
                                  {"device": "WEBRTC"},
                                  {"device": "webrtc", "extra": True}])
def test_device_put_bad_value_400(call, users, r, body):
    resp = call("PUT", "/api/v1/users/1000/device", body, basic("1000", "secret"))
    assert resp.status == 400 and resp.body["error"]
    assert r.hget(keyspace.user_key("1000"), "device") is None


def test_device_put_non_ua_409(call, users, r):
    resp = call("PUT", "/api/v1/users/1001/device", {"device": "deskphone"},
                basic("1001", "bobpw"))
    assert resp.status == 409 and "ua" in resp.body["error"]
    assert call("PUT", "/api/v1/users/1001/device", {"device": "webrtc"}, ADMIN).status == 409
    assert r.hget(keyspace.user_key("1001"), "device") is None
    # GET works for any line type: a sip line rings its deskphone.
    add_contact(r, "1001", "deskphone")
    resp = call("GET", "/api/v1/users/1001/device", headers=basic("1001", "bobpw"))
    assert resp.status == 200
    assert (resp.body["effective"], resp.body["reason"]) == ("deskphone", "selected")


def test_line_type_switch_keeps_device(call, users, r):
    call("PUT", "/api/v1/users/1000/device", {"device": "deskphone"}, ADMIN)
    call("PUT", "/api/v1/users/1000", alice(line_type="sip"), ADMIN)
    assert r.hget(keyspace.user_key("1000"), "device") == b"deskphone"
    call("PUT", "/api/v1/users/1000", alice(line_type="ua"), ADMIN)
    assert call("GET", "/api/v1/users/1000/device", headers=ADMIN).body["selected"] == \
        "deskphone"


# --- forwarding rules ----------------------------------------------------------------------

OFF = {"enabled": False, "destination": None}
NO_FORWARDS = {"unconditional": OFF, "busy": OFF, "noanswer": OFF, "dnd": False}
FORWARDS = {"unconditional": {"enabled": False, "destination": "+33123456789"},
            "busy": {"enabled": True, "destination": "voicemail"},
            "noanswer": {"enabled": True, "destination": "2000"}, "dnd": True}


def stored_forwards(r, number):
    raw = r.hget(keyspace.user_key(number), "forwards")
    return None if raw is None else msgpack.unpackb(raw, raw=False)


def test_forwards_default_for_new_user(call, users, r):
    for number, headers in (("1000", basic("1000", "secret")), ("1001", ADMIN)):
        resp = call("GET", f"/api/v1/users/{number}/forwards", headers=headers)
        assert (resp.status, resp.body) == (200, NO_FORWARDS)
    assert stored_forwards(r, "1000") is None


def test_forwards_put_get_and_replace(call, users, r):
    me = basic("1000", "secret")
    resp = call("PUT", "/api/v1/users/1000/forwards", FORWARDS, me)
    assert (resp.status, resp.body) == (200, FORWARDS)
    assert stored_forwards(r, "1000") == FORWARDS           # msgpack of the API shape
    assert call("GET", "/api/v1/users/1000/forwards", headers=me).body == FORWARDS
    assert call("GET", "/api/v1/users/1000/forwards", headers=ADMIN).body == FORWARDS
    # PUT replaces the whole set: keys left out go back to their defaults.
    resp = call("PUT", "/api/v1/users/1000/forwards",
                {"busy": {"enabled": True, "destination": "*98"}}, ADMIN)
    expected = {**NO_FORWARDS, "busy": {"enabled": True, "destination": "*98"}}
    assert (resp.status, resp.body) == (200, expected)
    assert stored_forwards(r, "1000") == expected
    # destination may be left out of a disabled rule; it is then null.
    resp = call("PUT", "/api/v1/users/1000/forwards", {"busy": {"enabled": False}}, me)
    assert (resp.status, resp.body) == (200, NO_FORWARDS)
    assert stored_forwards(r, "1000") == NO_FORWARDS
    # Every line type has forwards (1001 is a sip line).
    resp = call("PUT", "/api/v1/users/1001/forwards", FORWARDS, basic("1001", "bobpw"))
    assert (resp.status, resp.body) == (200, FORWARDS)
    # The profile never shows them, and user updates keep them.
    call("PUT", "/api/v1/users/1001", alice(name="Bob", line_type="ua"), ADMIN)
    assert "forwards" not in call("GET", "/api/v1/users/1001", headers=ADMIN).body
    assert call("GET", "/api/v1/users/1001/forwards", headers=ADMIN).body == FORWARDS


@pytest.mark.parametrize("body,raw,word", [
    (None, b"", "body"),
    (None, b"{", "JSON"),
    ([], None, "object"),
    ("busy", None, "object"),
    ({"always": OFF}, None, "always"),
    ({**NO_FORWARDS, "ring_seconds": 5}, None, "ring_seconds"),
    ({"busy": None}, None, "busy"),
    ({"busy": [True, "2000"]}, None, "busy"),
    ({"busy": {"destination": "2000"}}, None, "busy.enabled"),
    ({"busy": {"enabled": "true", "destination": "2000"}}, None, "busy.enabled"),
    ({"busy": {"enabled": 1, "destination": "2000"}}, None, "busy.enabled"),
    ({"busy": {"enabled": True, "destination": "2000", "x": 1}}, None, "busy.x"),
    ({"busy": {"enabled": True}}, None, "busy is enabled but has no destination"),
    ({"noanswer": {"enabled": True, "destination": None}}, None, "noanswer is enabled"),
    ({"unconditional": {"enabled": True, "destination": ""}}, None,
     "unconditional.destination"),
    ({"busy": {"enabled": True, "destination": 2000}}, None, "busy.destination"),
    ({"busy": {"enabled": True, "destination": "VOICEMAIL"}}, None, "busy.destination"),
    ({"busy": {"enabled": True, "destination": "sip:2000@h"}}, None, "busy.destination"),
    ({"busy": {"enabled": True, "destination": "1" * 33}}, None, "busy.destination"),
    ({"busy": {"enabled": True, "destination": "+1+2"}}, None, "busy.destination"),
    ({"busy": {"enabled": True, "destination": "1000"}}, None, "own number"),
    ({"noanswer": {"enabled": False, "destination": "1000"}}, None, "own number"),
    ({"dnd": "true"}, None, "dnd"),
    ({"dnd": 0}, None, "dnd"),
    ({"dnd": None}, None, "dnd"),
])
def test_forwards_put_invalid_400_changes_nothing(call, users, r, body, raw, word):
    call("PUT", "/api/v1/users/1000/forwards", FORWARDS, ADMIN)
    for headers in (basic("1000", "secret"), ADMIN):
        resp = call("PUT", "/api/v1/users/1000/forwards", body, headers, raw=raw)
        assert resp.status == 400, resp.body
        assert word in resp.body["error"], resp.body
        assert stored_forwards(r, "1000") == FORWARDS
    assert call("GET", "/api/v1/users/1000/forwards", headers=ADMIN).body == FORWARDS


def test_forwards_to_own_did_400(call, r):
    call("PUT", "/api/v1/users/1000", alice(dids=["+33123456789"]), ADMIN)
    resp = call("PUT", "/api/v1/users/1000/forwards",
                {"busy": {"enabled": True, "destination": "+33123456789"}}, ADMIN)
    assert resp.status == 400 and "DID" in resp.body["error"]
    assert stored_forwards(r, "1000") is None


def test_forwards_auth(call, users, r):
    path = "/api/v1/users/1000/forwards"
    body = {"dnd": True}
    for method in ("GET", "PUT"):
        # No or wrong credentials: 401 with a Basic challenge.
        for headers in ({}, basic("1000", "wrong"), basic("9999", "secret"),
                        {"authorization": "Bearer nope"}):
            resp = call(method, path, body, headers)
            assert resp.status == 401, (method, headers)
            assert resp.headers["WWW-Authenticate"].startswith("Basic realm=")
        # A valid user about another number, existing or not: 403.
        for other in ("1000", "1002", "abc"):
            resp = call(method, f"/api/v1/users/{other}/forwards", body,
                        basic("1001", "bobpw"))
            assert resp.status == 403, (method, other)
        # The admin about an unknown number: 404.
        for other in ("1002", "abc"):
            resp = call(method, f"/api/v1/users/{other}/forwards", body, ADMIN)
            assert resp.status == 404, (method, other)
        assert call(method, path, body, basic("1000", "secret")).status == 200
    assert stored_forwards(r, "1000") == {**NO_FORWARDS, "dnd": True}
    assert stored_forwards(r, "1001") is None
    assert not r.exists(keyspace.user_key("1002"))
    resp = call("DELETE", path, headers=ADMIN)
    assert resp.status == 405 and resp.headers["Allow"] == "GET, PUT, OPTIONS"


def test_forwards_deleted_with_user(call, users, r):
    call("PUT", "/api/v1/users/1000/forwards", FORWARDS, ADMIN)
    assert call("DELETE", "/api/v1/users/1000", headers=ADMIN).status == 204
    assert call("GET", "/api/v1/users/1000/forwards", headers=ADMIN).status == 404
    assert not r.exists(keyspace.user_key("1000"))
    call("PUT", "/api/v1/users/1000", alice(), ADMIN)
    assert call("GET", "/api/v1/users/1000/forwards", headers=ADMIN).body == NO_FORWARDS


# --- MDS -----------------------------------------------------------------------------------

def test_mds_crud(call, r):
    rec = {"uri": "sip:192.0.2.10:5060", "addresses": ["192.0.2.10", "2001:db8::10"]}
    resp = call("PUT", "/api/v1/mds/mds1", rec, ADMIN)
    assert resp.status == 201
    assert resp.body == {"name": "mds1", **rec, "up": None, "since": None}
    assert call("GET", "/api/v1/mds/mds1", headers=ADMIN).body == {"name": "mds1", **rec,
                                                                   "up": None, "since": None}
    rec2 = {"uri": "sip:mds1.example.com:5070", "addresses": ["192.0.2.11"], "name": "mds1"}
    resp = call("PUT", "/api/v1/mds/mds1", rec2, ADMIN)
    assert resp.status == 200 and resp.body["uri"] == "sip:mds1.example.com:5070"
    assert r.hgetall("ua:mds:addr") == {b"192.0.2.11": b"mds1"}
    call("PUT", "/api/v1/mds/mds0", {"uri": "sip:192.0.2.20:5060"}, ADMIN)
    assert [m["name"] for m in call("GET", "/api/v1/mds", headers=ADMIN).body] == \
        ["mds0", "mds1"]
    assert call("DELETE", "/api/v1/mds/mds1", headers=ADMIN).status == 204
    assert call("GET", "/api/v1/mds/mds1", headers=ADMIN).status == 404
    assert call("DELETE", "/api/v1/mds/mds1", headers=ADMIN).status == 404
    assert r.hgetall("ua:mds:addr") == {}


def test_mds_shows_this_proxys_probing_result(call, r):
    node = {"UA_NODE_ID": "node-a"}
    call("PUT", "/api/v1/mds/mds1", {"uri": "sip:192.0.2.10:5060"}, ADMIN)
    seen = mds_health.Health("sip:192.0.2.10:5060", False, 1700000000.0, 2)
    mds_health.save(r, "node-b", {"mds1": seen})
    assert call("GET", "/api/v1/mds/mds1", headers=ADMIN, env_over=node).body["up"] is None
    mds_health.save(r, "node-a", {"mds1": seen})
    assert call("GET", "/api/v1/mds", headers=ADMIN, env_over=node).body[0]["up"] is False
    resp = call("GET", "/api/v1/mds/mds1", headers=ADMIN, env_over=node)
    assert (resp.body["up"], resp.body["since"]) == (False, "2023-11-14T22:13:20Z")
    # measured on another URI: not known for the new one
    call("PUT", "/api/v1/mds/mds1", {"uri": "sip:192.0.2.10:5070"}, ADMIN)
    assert call("GET", "/api/v1/mds/mds1", headers=ADMIN, env_over=node).body["up"] is None


@pytest.mark.parametrize("name,body", [
    ("mds1", {"uri": "http://192.0.2.10"}),
    ("mds1", {"uri": "sip:192.0.2.10:99999"}),
    ("mds1", {"addresses": []}),
    ("mds1", {"uri": "sip:192.0.2.10:5060", "addresses": ["192.0.2.300"]}),
    ("mds1", {"uri": "sip:192.0.2.10:5060", "addresses": ["mds.example.com"]}),
    ("mds1", {"uri": "sip:192.0.2.10:5060", "up": True}),
    ("mds1", {"uri": "sip:192.0.2.10:5060", "name": "mds2"}),
    ("bad%20name", {"uri": "sip:192.0.2.10:5060"}),
    ("x" * 65, {"uri": "sip:192.0.2.10:5060"}),
])
def test_mds_validation_400(call, r, name, body):
    resp = call("PUT", f"/api/v1/mds/{name}", body, ADMIN)
    assert resp.status == 400 and resp.body["error"]
    assert r.keys("*") == []


def test_mds_address_taken_400(call, r):
    call("PUT", "/api/v1/mds/mds1", {"uri": "sip:192.0.2.10:5060", "addresses": ["192.0.2.10"]},
         ADMIN)
    dump = {k: r.dump(k) for k in r.keys("*")}
    resp = call("PUT", "/api/v1/mds/mds2",
                {"uri": "sip:192.0.2.11:5060", "addresses": ["192.0.2.11", "192.0.2.10"]}, ADMIN)
    assert resp.status == 400 and "192.0.2.10" in resp.body["error"]
    assert {k: r.dump(k) for k in r.keys("*")} == dump


def test_mds_delete_in_use_409(call, r):
    call("PUT", "/api/v1/mds/mds1", {"uri": "sip:192.0.2.10:5060", "addresses": ["192.0.2.10"]},
         ADMIN)
    assert call("PUT", "/api/v1/users/1000", alice(mds="mds1"), ADMIN).status == 201
    resp = call("DELETE", "/api/v1/mds/mds1", headers=ADMIN)
    assert resp.status == 409 and "1000" in resp.body["error"]
    assert call("GET", "/api/v1/mds/mds1", headers=ADMIN).status == 200
    assert r.hget("ua:mds:addr", "192.0.2.10") == b"mds1"
    call("PUT", "/api/v1/users/1000", alice(mds=None), ADMIN)
    assert call("DELETE", "/api/v1/mds/mds1", headers=ADMIN).status == 204


# --- CORS ----------------------------------------------------------------------------------

def test_cors_any_origin_when_unconfigured(call, users):
    origin = "https://uc.example.com"
    resp = call("OPTIONS", "/api/v1/users/1000/device",
                headers={"origin": origin, "access-control-request-method": "PUT",
                         "access-control-request-headers": "authorization, content-type"})
    assert resp.status == 200
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert "PUT" in resp.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]
    assert "Content-Type" in resp.headers["Access-Control-Allow-Headers"]
    resp = call("GET", "/api/v1/users/1000/device",
                headers={"origin": origin, **basic("1000", "secret")})
    # Any origin: a wildcard, never with credentials (cookies); an Authorization header
    # the page holds itself still goes.
    assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in resp.headers
    # Errors carry it too, so the browser can read them.
    resp = call("GET", "/api/v1/users/1000/device", headers={"origin": origin})
    assert resp.status == 401 and resp.headers["Access-Control-Allow-Origin"] == "*"
    # No Origin, no CORS header.
    resp = call("GET", "/api/v1/health")
    assert "Access-Control-Allow-Origin" not in resp.headers


def test_cors_configured_origins(call):
    over = {"UA_WS_ORIGINS": "https://uc.example.com, https://other.example.com"}
    preflight = {"access-control-request-method": "GET"}
    ok = call("OPTIONS", "/api/v1/health", headers={"origin": "https://other.example.com",
                                                    **preflight}, env_over=over)
    assert ok.status == 200
    assert ok.headers["Access-Control-Allow-Origin"] == "https://other.example.com"
    assert ok.headers["Access-Control-Allow-Credentials"] == "true"
    bad = call("OPTIONS", "/api/v1/health", headers={"origin": "https://evil.example.com",
                                                     **preflight}, env_over=over)
    assert bad.status == 403 and "Access-Control-Allow-Origin" not in bad.headers
    assert bad.body == {"error": "origin not allowed"}
    resp = call("GET", "/api/v1/health", headers={"origin": "https://evil.example.com"},
                env_over=over)
    assert resp.status == 200 and "Access-Control-Allow-Origin" not in resp.headers
    resp = call("GET", "/api/v1/health", headers={"origin": "https://uc.example.com"},
                env_over=over)
    assert resp.headers["Access-Control-Allow-Origin"] == "https://uc.example.com"
    # Not a preflight (no Access-Control-Request-Method): a method the path does not have.
    plain = call("OPTIONS", "/api/v1/users")
    assert plain.status == 405 and plain.headers["Allow"] == "GET, OPTIONS"


# --- state store unreachable ---------------------------------------------------------------

def test_redis_down_503_then_recovers(call, users, redis_server, counted):
    me = basic("1000", "secret")
    assert call("GET", "/api/v1/health").status == 200
    redis_server.stop()
    try:
        requests = [("GET", "/api/v1/users", None, ADMIN),
                    ("GET", "/api/v1/users/1000", None, ADMIN),
                    ("PUT", "/api/v1/users/1002", alice(), ADMIN),
                    ("DELETE", "/api/v1/users/1000", None, ADMIN),
                    ("GET", "/api/v1/mds", None, ADMIN),
                    ("PUT", "/api/v1/mds/m1", {"uri": "sip:h:1"}, ADMIN),
                    ("GET", "/api/v1/users/1000/device", None, ADMIN),
                    ("PUT", "/api/v1/users/1000/device", {"device": "webrtc"}, ADMIN),
                    ("GET", "/api/v1/users/1000/device", None, me)]
        for method, path, body, headers in requests:
            started = time.monotonic()
            resp = call(method, path, body, headers)
            assert time.monotonic() - started < 2.0
            assert resp.status == 503, (method, path, resp.body)
            assert resp.headers["Retry-After"] == "1"
            assert resp.body["error"]
        del counted[:]
        resp = call("GET", "/api/v1/health")
        assert resp.status == 503
        assert resp.body == {"status": "degraded", "reason": "state store unreachable"}
        assert counted == [("ua_store_errors_total",)]
        # Checks that need no state still answer.
        assert call("GET", "/api/v1/users", headers={"authorization": "Bearer x"}).status == 401
        assert call("GET", "/api/v1/nope").status == 404
    finally:
        redis_server.start()
    # Same client, no restart of anything: it recovers by itself, data intact (AOF).
    assert call("GET", "/api/v1/health").status == 200
    assert call("GET", "/api/v1/users/1000", headers=ADMIN).body["name"] == "Alice"
    assert call("GET", "/api/v1/users/1000/device", headers=me).status == 200


def test_unconfigured_store_503(call, monkeypatch):
    monkeypatch.setenv("UA_REDIS_URL", "")
    from tests.support.redisfixtures import reset_store_client
    reset_store_client()
    resp = call("GET", "/api/v1/health")
    assert resp.status == 503
    assert call("GET", "/api/v1/users", headers=ADMIN).status == 503


def test_internal_error_500(call, monkeypatch):
    monkeypatch.setattr(provisioning.Provisioning, "list_users",
                        lambda self: 1 / 0)
    resp = call("GET", "/api/v1/users", headers=ADMIN)
    assert resp.status == 500 and resp.body == {"error": "internal error"}


def test_literal_paths_beat_parameters(call, users):
    """/users/export is not user "export"; presence is readable by any user."""
    resp = call("GET", "/api/v1/users/export", headers=ADMIN)
    assert resp.status == 200 and resp.body.startswith("exten,")
    assert call("GET", "/api/v1/users/1000", headers=ADMIN).body["number"] == "1000"
    assert call("DELETE", "/api/v1/users/export", headers=ADMIN).status == 404
    resp = call("GET", "/api/v1/users/1000/presence", headers=basic("1001", "bobpw"))
    assert resp.status == 200 and resp.body["state"] == "unavailable"
    assert call("GET", "/api/v1/users/1002/presence",
                headers=basic("1001", "bobpw")).status == 404


def test_health_degraded_while_media_relay_unreachable(call, tmp_path):
    from tests.support.rtpengineproc import RtpengineProcess
    rtpengine = RtpengineProcess(tmp_path).start()
    over = {"UA_MEDIA": "rtpengine", "UA_RTPENGINE_URL": rtpengine.url}
    try:
        assert call("GET", "/api/v1/health", env_over=over).status == 200
    finally:
        rtpengine.stop()
    resp = call("GET", "/api/v1/health", env_over=over)
    assert (resp.status, resp.body["reason"]) == (503, "media relay unreachable")


def test_a_change_is_answered_only_after_every_cache_heard_of_it(call, users, monkeypatch):
    """The API's answer follows store.acknowledged's round trip (tests/redis/test_store.py
    shows why it must); a read acknowledges nothing."""
    pings, ping = [], redis.Redis.ping
    monkeypatch.setattr(redis.Redis, "ping", lambda self, **kw: (pings.append(1),
                                                                 ping(self, **kw))[1])
    path = "/api/v1/users/1000/device"
    assert call("PUT", path, {"device": "deskphone"}, ADMIN).status == 200 and pings == [1]
    assert call("GET", path, headers=ADMIN).status == 200 and pings == [1]
    assert call("PUT", path, {"device": "nope"}, ADMIN).status == 400 and pings == [1]
