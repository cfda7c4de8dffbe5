"""CSV import and export of users (lib/users/csvio, contract section 9) against a real Redis."""
import csv
import io

import pytest

from lib.store import keyspace
from lib.users import profiles
from lib.users import csvio
from lib.users.profiles import ha1
from tests.support.apicall import ADMIN, DOMAIN, basic

IMPORT = "/api/v1/users/import"
EXPORT = "/api/v1/users/export"
HEADER = ",".join(csvio.COLUMNS)


@pytest.fixture
def imp(call):
    """imp(csv text or bytes, query="", headers=ADMIN, env_over=None) -> the answer."""
    def do(text, query="", headers=None, env_over=None):
        raw = text.encode() if isinstance(text, str) else text
        headers = ADMIN if headers is None else headers
        return call("POST", IMPORT + query, headers={"content-type": "text/csv", **headers},
                    raw=raw, env_over=env_over)
    return do


@pytest.fixture
def mds(call):
    assert call("PUT", "/api/v1/mds/mds1", {"uri": "sip:10.0.0.1:5060"}, ADMIN).status == 201


def line(fields, header=HEADER):
    """One CSV record (quoted as needed, no line end) from a dict (missing columns empty)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(fields.get(c, "") for c in header.split(","))
    return out.getvalue()[:-2]


def csv_of(*rows, header=HEADER):
    """CSV text from a header and rows given as dicts (missing columns empty)."""
    return "\r\n".join([header] + [line(row, header) for row in rows]) + "\r\n"


def row(exten, **over):
    base = {"exten": exten, "firstname": "User", "lastname": exten, "line_type": "sip",
            "sip_secret": f"pw{exten}"}
    base.update(over)
    return base


def snapshot(r):
    """Every key with its type and full content: byte-for-byte state comparison."""
    out = {}
    for key in sorted(set(r.keys("*")) - {keyspace.PROVISIONING_VERSION_KEY.encode()}):
        kind = r.type(key).decode()
        if kind == "string":
            value = r.get(key)
        elif kind == "hash":
            value = sorted(r.hgetall(key).items())
        elif kind == "set":
            value = sorted(r.smembers(key))
        elif kind == "list":
            value = r.lrange(key, 0, -1)
        elif kind == "zset":
            value = r.zrange(key, 0, -1, withscores=True)
        else:
            value = r.dump(key)
        out[key] = (kind, value, r.ttl(key) > 0)
    return out


def stored_ha1(r, number):
    return r.hget(f"ua:user:{{{number}}}", "ha1").decode()


# --- create and update ---------------------------------------------------------------------

def test_create_then_update(call, imp, r, mds):
    text = csv_of(
        row("1000", firstname="Alice", lastname="Martin", line_type="ua", sip_secret="s1",
            mds="mds1", dids="+33123456789;+33123456790", ring_seconds="25"),
        row("1001", firstname="Bob", lastname="", line_type="sip",
            groups="sales; support", queues="q1", pickup_groups="p1", paging_groups="pg",
            callfilters="boss1", agent="42", switchboard="1"),
        row("1002", firstname=" Émile ", lastname="", line_type="webrtc", sip_secret="",
            ha1=ha1("1002", DOMAIN, "emile-pw")))
    resp = imp(text)
    assert (resp.status, resp.body) == (200, {"created": 3, "updated": 0})

    alice = call("GET", "/api/v1/users/1000", headers=ADMIN).body
    assert alice == {"number": "1000", "name": "Alice Martin", "line_type": "ua",
                     "mds": "mds1", "dids": ["+33123456789", "+33123456790"],
                     "ring_seconds": 25, "memberships": profiles.default_memberships()}
    bob = call("GET", "/api/v1/users/1001", headers=ADMIN).body
    assert bob["name"] == "Bob" and bob["ring_seconds"] == 30 and bob["mds"] is None
    assert bob["memberships"] == {"groups": ["sales", "support"], "queues": ["q1"],
                                  "pickup_groups": ["p1"], "paging_groups": ["pg"],
                                  "callfilters": ["boss1"], "agent": "42",
                                  "switchboard": True}
    assert call("GET", "/api/v1/users/1002", headers=ADMIN).body["name"] == "Émile"
    # Secrets and HA1 both work for the per-user API (Basic).
    assert call("GET", "/api/v1/users/1000/forwards", headers=basic("1000", "s1")).status == 200
    assert call("GET", "/api/v1/users/1002/forwards",
                headers=basic("1002", "emile-pw")).status == 200
    assert r.get("ua:did:+33123456789") == b"1000"

    # Update: the row replaces the record; empty sip_secret and ha1 keep the password.
    old_ha1 = stored_ha1(r, "1000")
    resp = imp(csv_of(row("1000", firstname="Alicia", lastname="", line_type="ua",
                          sip_secret="", dids="+33123456790")))
    assert (resp.status, resp.body) == (200, {"created": 0, "updated": 1})
    alice = call("GET", "/api/v1/users/1000", headers=ADMIN).body
    assert (alice["name"], alice["mds"], alice["dids"], alice["ring_seconds"]) == \
        ("Alicia", None, ["+33123456790"], 30)
    assert stored_ha1(r, "1000") == old_ha1
    assert r.get("ua:did:+33123456789") is None
    # A new secret, then an HA1, replace the password.
    assert imp(csv_of(row("1000", line_type="ua", sip_secret="s2"))).status == 200
    assert stored_ha1(r, "1000") == ha1("1000", DOMAIN, "s2")
    given = ha1("1000", DOMAIN, "s3")
    assert imp(csv_of(row("1000", line_type="ua", sip_secret="", ha1=given))).status == 200
    assert stored_ha1(r, "1000") == given
    # Mixed create and update in one file.
    resp = imp(csv_of(row("1000", line_type="ua", sip_secret=""), row("1003")))
    assert (resp.status, resp.body) == (200, {"created": 1, "updated": 1})


def test_optional_columns_take_defaults_and_order_is_free(call, imp):
    resp = imp("line_type,sip_secret,exten\r\nua,pw,2000\r\n")
    assert (resp.status, resp.body) == (200, {"created": 1, "updated": 0})
    assert call("GET", "/api/v1/users/2000", headers=ADMIN).body == {
        "number": "2000", "name": "", "line_type": "ua", "mds": None, "dids": [],
        "ring_seconds": 30, "memberships": profiles.default_memberships()}
    # Header only: nothing to do. Blank lines are skipped; LF line ends are fine.
    assert imp("exten,line_type\n").body == {"created": 0, "updated": 0}
    resp = imp("exten,line_type,sip_secret\n\n2001,sip,x\n,,\n")
    assert resp.body == {"created": 1, "updated": 0}


def test_utf8_bom_and_quoted_fields(call, imp):
    text = csv_of(row("1000", firstname='Ann, "the" first', lastname="Lee"))
    resp = imp(b"\xef\xbb\xbf" + text.encode())
    assert resp.status == 200
    assert call("GET", "/api/v1/users/1000", headers=ADMIN).body["name"] == \
        'Ann, "the" first Lee'


@pytest.mark.parametrize("over,word", [
    ({"sip_secret": "", "ha1": ""}, "sip_secret or ha1 is required"),
    ({"sip_secret": "", "ha1": "ABCDEF0123456789ABCDEF0123456789"}, "lowercase"),
    ({"sip_secret": "", "ha1": "abc"}, "ha1"),
    ({"sip_secret": "pw", "ha1": "0" * 32}, "does not match sip_secret"),
    ({"exten": "10a0"}, "exten"),
    ({"line_type": "pstn"}, "line_type"),
    ({"ring_seconds": "0"}, "ring_seconds"),
    ({"ring_seconds": "abc"}, "ring_seconds"),
    ({"ring_seconds": "9999999"}, "ring_seconds"),
    ({"switchboard": "yes", "line_type": "sip"}, "switchboard"),
    ({"dids": "+33x"}, "DID"),
    ({"dids": "123;123"}, "same DID twice"),
    ({"mds": "nope"}, "unknown MDS"),
    ({"mds": "bad name!"}, "mds"),
    ({"sip_secret": "x" * 300}, "sip_secret"),
])
def test_bad_row_400_nothing_stored(imp, r, over, word):
    fields = dict(over)
    resp = imp(csv_of(row(fields.pop("exten", "1000"), **fields)))
    assert resp.status == 400, resp.body
    assert resp.body["error"] == "1 bad line"
    assert [line["line"] for line in resp.body["lines"]] == [2]
    assert word in resp.body["lines"][0]["error"]
    assert r.keys("*") == []


def test_both_secret_and_matching_ha1(imp, r):
    resp = imp(csv_of(row("1000", sip_secret="pw", ha1=ha1("1000", DOMAIN, "pw"))))
    assert resp.status == 200
    assert stored_ha1(r, "1000") == ha1("1000", DOMAIN, "pw")


# --- features a ua line refuses -------------------------------------------------------------

@pytest.mark.parametrize("column,value,word", [
    ("groups", "sales", "groups"),
    ("queues", "q1", "queues"),
    ("pickup_groups", "p1", "pickup"),
    ("paging_groups", "pg1", "paging"),
    ("callfilters", "boss", "boss/secretary"),
    ("agent", "42", "agent"),
    ("switchboard", "1", "switchboard"),
])
def test_ua_unsupported_feature_refused(imp, r, column, value, word):
    resp = imp(csv_of(row("1000", line_type="ua", **{column: value})))
    assert resp.status == 400
    (line,) = resp.body["lines"]
    assert line["line"] == 2 and word in line["error"]
    assert "not supported for Unique Account" in line["error"]
    assert r.keys("*") == []
    # The same membership is fine for a sip line; switchboard 0 is fine for ua.
    assert imp(csv_of(row("1000", line_type="sip", **{column: value}))).status == 200
    assert imp(csv_of(row("1001", line_type="ua", switchboard="0"))).status == 200


def test_ua_update_adding_feature_refused_and_kept(call, imp, r):
    assert imp(csv_of(row("1000", line_type="ua"))).status == 200
    before = snapshot(r)
    resp = imp(csv_of(row("1000", line_type="ua", sip_secret="", queues="q1")))
    assert resp.status == 400 and "queues" in resp.body["lines"][0]["error"]
    assert snapshot(r) == before


# --- DID uniqueness ---------------------------------------------------------------------------

def test_did_unique_within_file(imp, r):
    resp = imp(csv_of(row("1000", dids="+33100"), row("1001", dids="+33200"),
                      row("1002", dids="+33100")))
    assert resp.status == 400
    assert resp.body["lines"] == [
        {"line": 4, "error": "DID +33100 is also given to user 1000"}]
    assert r.keys("*") == []
    # A DID that is another row's number.
    resp = imp(csv_of(row("1000", dids="1001"), row("1001")))
    assert resp.status == 400 and "number of another user" in resp.body["lines"][0]["error"]
    assert r.keys("*") == []


def test_did_unique_against_store(call, imp, r):
    assert call("PUT", "/api/v1/users/1000", {"name": "A", "password": "p", "line_type": "sip",
                                              "dids": ["+33100"]}, ADMIN).status == 201
    before = snapshot(r)
    resp = imp(csv_of(row("1001", dids="+33100")))
    assert resp.status == 400
    assert resp.body["lines"] == [{"line": 2, "error": "DID +33100 already belongs to user 1000"}]
    assert snapshot(r) == before
    # Moving the DID in the same file (1000 gives it up, 1001 takes it) is allowed.
    resp = imp(csv_of(row("1000", sip_secret="", dids=""), row("1001", dids="+33100")))
    assert (resp.status, resp.body) == (200, {"created": 1, "updated": 1})
    assert r.get("ua:did:+33100") == b"1001"
    # A new user whose number is a stored DID.
    assert imp(csv_of(row("33100"), row("1002", dids="33100"))).status == 400


# --- all-or-nothing, every bad line listed ----------------------------------------------------

def test_all_or_nothing_lists_every_bad_line(call, imp, r, mds):
    assert call("PUT", "/api/v1/users/5000", {"name": "Z", "password": "p", "line_type": "sip",
                                              "dids": ["+33999"]}, ADMIN).status == 201
    before = snapshot(r)
    records = [
        HEADER,                                             # 1
        line(row("1000", mds="mds1")),                      # 2 good
        line(row("10x0")),                                  # 3 bad exten
        line(row("1001", firstname="Multi\nline")),         # 4-5 good, on two lines
        line(row("1002", mds="other")),                     # 6 unknown MDS
        line(row("1003", ring_seconds="x")),                # 7 bad ring_seconds
        "1004,too,few",                                     # 8 field count
        line(row("1000")),                                  # 9 duplicate exten
        line(row("1005", line_type="ua", groups="g")),      # 10 ua with groups
        line(row("1006", dids="+33999")),                   # 11 DID of a stored user
        "",                                                 # 12 blank
        line(row("1007")),                                  # 13 good
    ]
    text = "\r\n".join(records) + "\r\n"
    resp = imp(text)
    assert resp.status == 400, resp.body
    lines = {item["line"]: item["error"] for item in resp.body["lines"]}
    assert resp.body["error"] == f"{len(lines)} bad lines"
    assert sorted(lines) == [3, 6, 7, 8, 9, 10, 11], lines
    assert "exten" in lines[3]
    assert "unknown MDS 'other'" in lines[6]
    assert "ring_seconds" in lines[7]
    assert "3 fields, the header has 16" in lines[8]
    assert "appears twice (first on line 2)" in lines[9]
    assert "groups" in lines[10]
    assert "+33999" in lines[11]
    assert snapshot(r) == before
    # Same answer as a dry run; then without the bad lines everything is stored.
    assert imp(text, "?dry_run=1").body == resp.body
    good = [records[i] for i in (0, 1, 3, 11)]
    resp = imp("\n".join(good))
    assert (resp.status, resp.body) == (200, {"created": 3, "updated": 0})
    assert call("GET", "/api/v1/users/1001", headers=ADMIN).body["name"] == "Multi\nline 1001"


def test_conflict_with_refused_row_still_reported(imp, r):
    """Store-side errors are listed even when other rows fail the per-row checks."""
    resp = imp(csv_of(row("1000", line_type="bad"), row("1001", dids="+331"),
                      row("1002", dids="+331"), row("1003", mds="nomds")))
    assert resp.status == 400
    assert [item["line"] for item in resp.body["lines"]] == [2, 4, 5]
    assert r.keys("*") == []


# --- whole-file errors --------------------------------------------------------------------------

def test_not_utf8(imp, r):
    text = csv_of(row("1000"), row("1001", firstname="Ren\u00e9"))
    resp = imp(text.encode("latin-1"))
    assert resp.status == 400
    assert resp.body["error"] == "CSV must be UTF-8"
    assert resp.body["lines"][0]["line"] == 3 and "0xe9" in resp.body["lines"][0]["error"]
    assert r.keys("*") == []
    resp = imp(text.encode("utf-16"))
    assert (resp.status, resp.body["error"]) == (400, "CSV must be UTF-8")
    headers = {**ADMIN, "content-type": "text/csv; charset=ISO-8859-1"}
    resp = imp(text.encode(), headers=headers)
    assert (resp.status, resp.body["error"]) == (400, "CSV must be UTF-8")
    headers = {**ADMIN, "content-type": "text/csv; charset=utf-8"}
    assert imp(text.encode(), headers=headers).status == 200


@pytest.mark.parametrize("header,word", [
    (HEADER + ",email", "unknown column 'email'"),
    ("exten,line_type,foo,bar", "unknown columns 'foo', 'bar'"),
    ("exten;line_type;sip_secret", "separated by commas"),
    ("exten,line_type,", "unknown column ''"),
    ("exten,line_type,exten", "column exten appears twice"),
    ("firstname,line_type,sip_secret", "missing column exten"),
    ("exten,firstname,sip_secret", "missing column line_type"),
    ("firstname,sip_secret", "missing columns exten, line_type"),
])
def test_bad_header(imp, r, header, word):
    resp = imp(header + "\r\n1000,sip,pw\r\n")
    assert resp.status == 400
    assert word in resp.body["error"]
    assert resp.body["lines"] == [{"line": 1, "error": resp.body["error"]}]
    assert r.keys("*") == []


@pytest.mark.parametrize("raw", [b"", b"\r\n", b"\r\n" + HEADER.encode() + b"\r\n"])
def test_header_required_on_line_1(imp, r, raw):
    resp = imp(raw)
    assert resp.status == 400 and "header row is required" in resp.body["error"]
    assert r.keys("*") == []


def test_malformed_csv(imp, r):
    resp = imp(HEADER + '\r\n1000,"Ann"x,Lee,sip,pw' + "," * 11 + "\r\n")
    assert resp.status == 400 and "malformed CSV" in resp.body["error"]
    assert resp.body["lines"][0]["line"] == 2
    assert r.keys("*") == []


# --- dry run -----------------------------------------------------------------------------------

def test_dry_run(call, imp, r):
    assert imp(csv_of(row("1000", dids="+33100"))).status == 200
    before = snapshot(r)
    text = csv_of(row("1000", sip_secret="new", dids="+33200"), row("1001", dids="+33100"),
                  row("1002"))
    resp = imp(text, "?dry_run=1")
    assert (resp.status, resp.body) == (200, {"created": 2, "updated": 1, "dry_run": True})
    assert snapshot(r) == before
    assert imp(text, "?dry_run=true").body["dry_run"] is True
    resp = imp(text, "?dry_run=0")
    assert (resp.status, resp.body) == (200, {"created": 2, "updated": 1})
    assert r.get("ua:did:+33100") == b"1001"
    assert imp(text, "?dry_run=maybe").status == 400
    # A dry run leaves no WATCH behind: a normal write right after works.
    assert imp(text, "?dry_run=1").status == 200
    assert call("DELETE", "/api/v1/users/1002", headers=ADMIN).status == 204


# --- export ----------------------------------------------------------------------------------

def test_export_import_round_trip(call, imp, r, mds):
    assert call("PUT", "/api/v1/mds/mds2", {"uri": "sip:10.0.0.2"}, ADMIN).status == 201
    users = {
        "1000": {"name": "Alice Martin", "password": "a", "line_type": "ua", "mds": "mds1",
                 "dids": ["+33123456789", "0123"], "ring_seconds": 45},
        "999": {"name": "Jean  Pierre \"JP\", Dupont", "password": "b", "line_type": "sip",
                "memberships": {"groups": ["g 1", "g2"], "queues": ["q"],
                                "pickup_groups": ["p"], "paging_groups": ["pg"],
                                "callfilters": ["c"], "agent": "7", "switchboard": True}},
        "20": {"name": "Zoé\nNewline", "password": "c", "line_type": "webrtc",
               "mds": "mds2"},
        "21": {"name": "", "password": "d", "line_type": "ua"},
        "1001": {"name": "Émile", "password": "e", "line_type": "sip"},
    }
    for number, body in users.items():
        assert call("PUT", f"/api/v1/users/{number}", body, ADMIN).status == 201
    assert call("PUT", "/api/v1/users/21/device", {"device": "deskphone"}, ADMIN).status == 200
    assert call("PUT", "/api/v1/users/1000/forwards",
                {"busy": {"enabled": True, "destination": "voicemail"}}, ADMIN).status == 200

    resp = call("GET", EXPORT, headers=ADMIN)
    assert resp.status == 200
    text = resp.body
    assert resp.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert resp.headers["Content-Disposition"] == 'attachment; filename="users.csv"'
    lines = text.split("\r\n")
    assert lines[0] == HEADER
    assert [ln.split(",")[0] for ln in lines[1:] if ln and ln[0].isdigit()] == \
        ["20", "21", "999", "1000", "1001"]
    assert "sip_secret" not in text.split("\r\n")[1]
    assert f"1000,Alice,Martin,ua,,{ha1('1000', DOMAIN, 'a')},mds1,+33123456789;0123,45," \
           ",,,,,,0" in text

    before = snapshot(r)
    resp = imp(text)
    assert (resp.status, resp.body) == (200, {"created": 0, "updated": 5})
    assert snapshot(r) == before
    assert call("GET", EXPORT, headers=ADMIN).body == text

    # Into an empty store: the same users, passwords (HA1) included.
    r.flushall()
    assert call("PUT", "/api/v1/mds/mds1", {"uri": "sip:10.0.0.1:5060"}, ADMIN).status == 201
    assert call("PUT", "/api/v1/mds/mds2", {"uri": "sip:10.0.0.2"}, ADMIN).status == 201
    assert imp(text).body == {"created": 5, "updated": 0}
    assert call("GET", EXPORT, headers=ADMIN).body == text
    for number, body in users.items():
        got = call("GET", f"/api/v1/users/{number}", headers=ADMIN).body
        assert got["name"] == body["name"]
        assert call("GET", f"/api/v1/users/{number}/forwards",
                    headers=basic(number, body["password"])).status == 200


def test_export_empty_and_content_types(call, imp):
    resp = call("GET", EXPORT, headers=ADMIN)
    assert (resp.status, resp.headers["Content-Type"], resp.body) == \
        (200, "text/csv; charset=utf-8", HEADER + "\r\n")
    resp = imp("exten,line_type,sip_secret\n1000,ua,pw\n", "?dry_run=1")
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.body == {"created": 1, "updated": 0, "dry_run": True}
    # Errors of the CSV endpoints stay JSON.
    resp = call("GET", EXPORT)
    assert resp.status == 401 and resp.headers["Content-Type"] == "application/json"
    assert resp.body["error"]


@pytest.mark.parametrize("body,word", [
    ({"name": " Alice"}, "name"),
    ({"name": "Alice "}, "name"),
    ({"memberships": {"groups": ["a;b"]}}, "groups"),
    ({"memberships": {"queues": [" q"]}}, "queues"),
    ({"memberships": {"agent": "7 "}}, "agent"),
])
def test_export_refuses_what_csv_cannot_carry(call, body, word):
    base = {"name": "A", "password": "p", "line_type": "sip"}
    assert call("PUT", "/api/v1/users/1000", {**base, **body}, ADMIN).status == 201
    resp = call("GET", EXPORT, headers=ADMIN)
    assert resp.status == 409 and "1000" in resp.body["error"] and word in resp.body["error"]


# --- auth and size ---------------------------------------------------------------------------

def test_admin_only(call, imp, r):
    assert imp(csv_of(row("1000", sip_secret="pw"))).status == 200
    before = snapshot(r)
    text = csv_of(row("1001"))
    for method, path in (("POST", IMPORT), ("GET", EXPORT)):
        raw = text.encode() if method == "POST" else b""
        for headers in ({}, {"authorization": "Bearer wrong"}, basic("1000", "wrong")):
            resp = call(method, path, headers=headers, raw=raw)
            assert resp.status == 401 and "WWW-Authenticate" in resp.headers
        resp = call(method, path, headers=basic("1000", "pw"), raw=raw)
        assert resp.status == 403 and resp.body["error"]
    assert snapshot(r) == before
    # The literal routes don't shadow the user routes, and keep their own methods (a GET
    # of /users/import asks for user "import").
    assert call("GET", "/api/v1/users/1000", headers=ADMIN).status == 200
    assert call("GET", IMPORT, headers=ADMIN).status == 404
    assert call("POST", EXPORT, headers=ADMIN).status == 405


def test_body_over_the_limit_413(imp, r):
    limit = 12 * 1024
    rows = []
    n = 0
    text = HEADER + "\r\n"
    while len(text.encode()) <= limit:
        rows.append(row(str(10000 + n), firstname="x" * 200))
        n += 1
        text = csv_of(*rows)
    over = {"UA_API_MAX_BODY": str(limit)}
    resp = imp(text, env_over=over)
    assert resp.status == 413 and str(limit) in resp.body["error"]
    assert r.keys("*") == []
    # Just under the limit is imported.
    text = csv_of(*rows[:-1])
    assert len(text.encode()) <= limit
    resp = imp(text, env_over=over)
    assert (resp.status, resp.body) == (200, {"created": len(rows) - 1, "updated": 0})
