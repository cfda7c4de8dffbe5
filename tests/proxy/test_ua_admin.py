"""ua-admin (lib/tools/admin_cli.py) as a subprocess against a real proxy: every command, its
output (human and --json) and its exit status (0 ok, 1 refused, 2 usage, 3 unreachable)."""
import csv
import io
import json
import os
import subprocess
import sys
import time

import pytest

from tests.support.proxy import ROOT, TOKEN
from tests.support.sipp import free_port

INSTALLED = ROOT / ".venv" / "bin" / "ua-admin"


def command():
    """The installed entry point when `make setup` made it, else the module."""
    if INSTALLED.exists():
        return [str(INSTALLED)]
    return [sys.executable, "-m", "lib.tools.admin_cli"]


def clean_env(**over):
    env = {k: v for k, v in os.environ.items() if not k.startswith("UA_")}
    env.update(over)
    return env


@pytest.fixture
def cli(proxy, redis_url):
    """cli(*args, env=None, input=None, timeout=60) -> CompletedProcess (text), with
    UA_API_URL and UA_API_TOKEN of the test proxy, on an empty store."""
    def run(*args, env=None, input=None, timeout=60, auth=True):
        base = {"UA_API_URL": proxy.api_url}
        if auth:
            base["UA_API_TOKEN"] = TOKEN
        return subprocess.run(command() + [str(a) for a in args], cwd=ROOT,
                              env=clean_env(**{**base, **(env or {})}), input=input,
                              capture_output=True, text=True, timeout=timeout)
    return run


def ok(result):
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result


def as_json(result):
    return json.loads(ok(result).stdout)


def fails(result, code, *words):
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    for word in words:
        assert word in result.stderr, (word, result.stderr)
    return result


def add_mds(cli, name="mds1", ip="127.0.0.10"):
    return ok(cli("mds", "add", name, "--uri", f"sip:{ip}:5060", "--address", ip))


# --- help, usage, reachability, credentials ----------------------------------------------

HELP_PATHS = [[], ["users"], ["users", "add"], ["users", "update"], ["users", "show"],
              ["users", "list"], ["users", "delete"], ["import"], ["export"], ["device"],
              ["device", "get"], ["device", "set"], ["forwards"], ["forwards", "get"],
              ["forwards", "set"], ["mds"], ["mds", "add"], ["mds", "list"],
              ["mds", "delete"], ["calls"], ["dial"], ["hangup"], ["answer"], ["events"]]


@pytest.mark.parametrize("path", HELP_PATHS, ids=lambda p: " ".join(p) or "main")
def test_help_on_every_command(path):
    result = subprocess.run(command() + path + ["--help"], cwd=ROOT, env=clean_env(),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: ua-admin"), result.stdout
    assert " ".join(["ua-admin"] + path) in result.stdout


def test_installed_by_setup():
    """`make setup` installs the entry point in the venv (pyproject.toml)."""
    assert INSTALLED.exists(), "run `make setup` (scripts/setup.sh installs ua-admin)"
    result = subprocess.run([str(INSTALLED), "--help"], capture_output=True, text=True,
                            env=clean_env(), cwd="/", timeout=30)
    assert result.returncode == 0 and "users" in result.stdout


@pytest.mark.parametrize("args", [
    [],                                              # no command
    ["users"],                                       # no action
    ["frobnicate"],
    ["users", "add", "1000"],                        # --name, --password, --line-type
    ["users", "add", "1000", "--name", "A", "--password", "x", "--line-type", "isdn"],
    ["users", "add", "1000", "--name", "A", "--password", "x", "--line-type", "ua",
     "--ring-seconds", "soon"],
    ["device", "set", "1000", "phone"],
    ["forwards", "set", "1000"],                     # nothing to change
    ["forwards", "set", "1000", "--dnd", "maybe"],
    ["mds", "add", "mds1"],                          # --uri
    ["import"],
    ["import", "x.csv", "--chunk-size", "100000"],
    ["users", "list", "--url", "ftp://host"],
], ids=lambda a: " ".join(a) or "none")
def test_usage_errors_exit_2(args):
    result = subprocess.run(command() + args, cwd=ROOT, capture_output=True, text=True,
                            env=clean_env(UA_API_URL="http://127.0.0.1:9"), timeout=30)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "usage:" in result.stderr or "error:" in result.stderr


def test_unreadable_file_is_a_usage_error(cli, tmp_path):
    fails(cli("import", tmp_path / "missing.csv"), 2, "cannot read")


def test_unreachable_api_exits_3():
    port = free_port("127.0.0.1")
    result = subprocess.run(command() + ["--url", f"http://127.0.0.1:{port}", "users",
                                         "list"], cwd=ROOT, env=clean_env(UA_API_TOKEN="x"),
                            capture_output=True, text=True, timeout=30)
    fails(result, 3, "cannot reach the API", f"127.0.0.1:{port}")


def test_store_down_is_5xx_exit_3(cli, redis_server, proxy):
    redis_server.stop()
    try:
        fails(cli("users", "list"), 3, "state store unavailable", "HTTP 503")
    finally:
        redis_server.start()
    deadline = time.monotonic() + 10
    while proxy.api("GET", "/api/v1/health", auth=None)[0] != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    ok(cli("users", "list"))


def test_wrong_token_is_refused_exit_1(cli):
    fails(cli("users", "list", "--token", "wrong"), 1, "invalid credentials", "HTTP 401")
    fails(cli("users", "list", env={"UA_API_TOKEN": "wrong"}), 1, "HTTP 401")
    # No token at all (none in the environment, no var/api_token): says where to put one.
    fails(cli("users", "list", auth=False, env={"UA_VAR_DIR": "/nonexistent"}), 1,
          "HTTP 401", "no admin token")


def test_json_error_body_on_refusal(cli):
    result = fails(cli("--json", "users", "show", "4242"), 1, "no user 4242", "HTTP 404")
    assert json.loads(result.stdout) == {"error": "no user 4242"}


def test_defaults_from_listen_port_and_token_file(cli, proxy, tmp_path):
    """No --url/UA_API_URL: http://$UA_LISTEN:$UA_API_PORT; no token: $UA_VAR_DIR/api_token
    (var/api_token of the repository by default)."""
    (tmp_path / "api_token").write_text(TOKEN + "\n")
    env = clean_env(UA_LISTEN=proxy.listen, UA_API_PORT=proxy.env["UA_API_PORT"],
                    UA_VAR_DIR=str(tmp_path))
    result = subprocess.run(command() + ["users", "list", "--json"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
    # --url wins over the environment, a trailing /api/v1 is accepted.
    ok(cli("--url", proxy.api_url + "/api/v1/", "users", "list",
           env={"UA_API_URL": "http://127.0.0.1:9"}))


def test_global_options_after_the_command(cli):
    assert as_json(cli("users", "list", "--json")) == []
    assert as_json(cli("--json", "users", "list")) == []


# --- MDS ---------------------------------------------------------------------------------

def test_mds_commands(cli):
    result = add_mds(cli)
    assert "created MDS mds1" in result.stdout
    assert "uri:" in result.stdout and "sip:127.0.0.10:5060" in result.stdout
    fails(cli("mds", "add", "mds1", "--uri", "sip:127.0.0.11:5060"), 1, "already exists")
    replaced = as_json(cli("mds", "add", "mds1", "--replace", "--uri", "sip:127.0.0.11:5070",
                           "--address", "127.0.0.11", "--address", "::1", "--json"))
    assert replaced["uri"] == "sip:127.0.0.11:5070"
    assert replaced["addresses"] == ["127.0.0.11", "::1"]
    fails(cli("mds", "add", "mds2", "--uri", "http://x"), 1, "uri must be sip:host:port",
          "HTTP 400")

    listed = ok(cli("mds", "list")).stdout.splitlines()
    assert listed[0].split() == ["NAME", "URI", "ADDRESSES", "UP"]
    assert listed[1].split()[:2] == ["mds1", "sip:127.0.0.11:5070"]
    items = as_json(cli("mds", "list", "--json"))
    assert [m["name"] for m in items] == ["mds1"] and "up" in items[0]

    ok(cli("users", "add", "1000", "--name", "A", "--password", "pw", "--line-type", "ua",
           "--mds", "mds1"))
    fails(cli("mds", "delete", "mds1"), 1, "still used", "HTTP 409")
    ok(cli("users", "delete", "1000"))
    assert "deleted MDS mds1" in ok(cli("mds", "delete", "mds1")).stdout
    fails(cli("mds", "delete", "mds1"), 1, "no MDS mds1", "HTTP 404")
    assert as_json(cli("mds", "list", "--json")) == []


# --- users -------------------------------------------------------------------------------

def test_users_add_show_update_list_delete(cli, proxy):
    add_mds(cli)
    result = ok(cli("users", "add", "1000", "--name", "Alice", "--password", "secret",
                    "--line-type", "ua", "--mds", "mds1", "--did", "+33123456789",
                    "--did", "0123456789", "--ring-seconds", "25"))
    assert "created user 1000" in result.stdout
    assert "dids:" in result.stdout and "+33123456789, 0123456789" in result.stdout
    fails(cli("users", "add", "1000", "--name", "Again", "--password", "x",
              "--line-type", "sip"), 1, "already exists", "users update")

    shown = ok(cli("users", "show", "1000")).stdout
    lines = dict(line.split(":", 1) for line in shown.splitlines())
    assert {k: v.strip() for k, v in lines.items()} == {
        "number": "1000", "name": "Alice", "line_type": "ua", "mds": "mds1",
        "dids": "+33123456789, 0123456789", "ring_seconds": "25", "memberships": "-"}
    assert "password" not in shown and "ha1" not in shown
    user = as_json(cli("users", "show", "1000", "--json"))
    assert user == proxy.api("GET", "/api/v1/users/1000")[1]
    assert user["dids"] == ["+33123456789", "0123456789"] and user["ring_seconds"] == 25

    # update: only the given fields change; the password is kept unless given.
    updated = as_json(cli("users", "update", "1000", "--name", "Alice B", "--json"))
    assert updated == {**user, "name": "Alice B"}
    assert proxy.api("GET", "/api/v1/users/1000/forwards", auth=("1000", "secret"))[0] == 200
    ok(cli("users", "update", "1000", "--password", "newpw", "--did", "+33999",
           "--ring-seconds", "40"))
    assert proxy.api("GET", "/api/v1/users/1000/forwards", auth=("1000", "secret"))[0] == 401
    assert proxy.api("GET", "/api/v1/users/1000/forwards", auth=("1000", "newpw"))[0] == 200
    user = as_json(cli("users", "show", "1000", "--json"))
    assert (user["name"], user["dids"], user["ring_seconds"], user["mds"]) == \
        ("Alice B", ["+33999"], 40, "mds1")
    user = as_json(cli("users", "update", "1000", "--no-dids", "--mds", "",
                       "--line-type", "sip", "--json"))
    assert (user["dids"], user["mds"], user["line_type"]) == ([], None, "sip")
    fails(cli("users", "update", "1000", "--ring-seconds", "301"), 1, "ring_seconds",
          "HTTP 400")
    fails(cli("users", "update", "4242", "--name", "Nobody"), 1, "no user 4242", "HTTP 404")
    fails(cli("users", "add", "1001", "--name", "Bob", "--password", "pw",
              "--line-type", "ua", "--mds", "nowhere"), 1, "unknown MDS")
    fails(cli("users", "add", "12a", "--name", "Bad", "--password", "pw",
              "--line-type", "ua"), 1, "HTTP 400")

    ok(cli("users", "add", "1001", "--name", "Bob", "--password", "pw", "--line-type",
           "webrtc"))
    table = ok(cli("users", "list")).stdout.splitlines()
    assert table[0].split() == ["NUMBER", "NAME", "LINE", "MDS", "DIDS", "RING"]
    assert [row.split()[0] for row in table[1:]] == ["1000", "1001"]
    assert table[1].startswith("1000") and "Alice B" in table[1]
    listed = as_json(cli("users", "list", "--json"))
    assert [u["number"] for u in listed] == ["1000", "1001"]

    assert "deleted user 1000" in ok(cli("users", "delete", "1000")).stdout
    assert as_json(cli("users", "delete", "1001", "--json")) == {"deleted": "1001"}
    fails(cli("users", "delete", "1000"), 1, "HTTP 404")
    fails(cli("users", "show", "1000"), 1, "no user 1000")
    assert as_json(cli("users", "list", "--json")) == []


# --- device, forwards --------------------------------------------------------------------

def test_device_get_and_set(cli):
    ok(cli("users", "add", "1000", "--name", "A", "--password", "pw", "--line-type", "ua"))
    ok(cli("users", "add", "1001", "--name", "B", "--password", "pw", "--line-type", "sip"))
    shown = ok(cli("device", "get", "1000")).stdout
    assert "selected:" in shown and "webrtc" in shown.splitlines()[0]
    assert "registered:" in shown and "deskphone=no" in shown
    result = ok(cli("device", "set", "1000", "deskphone"))
    assert "device deskphone selected" in result.stdout
    dev = as_json(cli("device", "get", "1000", "--json"))
    assert dev["selected"] == "deskphone"
    assert dev["registered"] == {"webrtc": False, "deskphone": False}
    assert as_json(cli("device", "set", "1000", "webrtc", "--json"))["selected"] == "webrtc"
    fails(cli("device", "set", "1001", "webrtc"), 1, "needs line type ua", "HTTP 409")
    fails(cli("device", "get", "4242"), 1, "HTTP 404")


def test_forwards_get_and_set_keep_rules_not_given(cli):
    ok(cli("users", "add", "1000", "--name", "A", "--password", "pw", "--line-type", "ua",
           "--did", "+3311"))
    off = {"enabled": False, "destination": None}
    assert as_json(cli("forwards", "get", "1000", "--json")) == {
        "unconditional": off, "busy": off, "noanswer": off, "dnd": False}
    shown = ok(cli("forwards", "get", "1000")).stdout.splitlines()
    assert [line.split(":")[0] for line in shown] == ["unconditional", "busy", "noanswer",
                                                     "dnd"]
    assert all(line.split(":", 1)[1].strip() == "off" for line in shown)

    ok(cli("forwards", "set", "1000", "--unconditional", "2000"))
    fw = as_json(cli("forwards", "set", "1000", "--busy", "voicemail", "--dnd", "on",
                     "--json"))
    assert fw == {"unconditional": {"enabled": True, "destination": "2000"},
                  "busy": {"enabled": True, "destination": "voicemail"},
                  "noanswer": off, "dnd": True}
    result = ok(cli("forwards", "set", "1000", "--unconditional", "off", "--dnd", "off"))
    assert "unconditional: off -> 2000" in result.stdout
    fw = as_json(cli("forwards", "get", "1000", "--json"))
    assert fw["unconditional"] == {"enabled": False, "destination": "2000"}
    assert fw["busy"] == {"enabled": True, "destination": "voicemail"} and not fw["dnd"]
    fw = as_json(cli("forwards", "set", "1000", "--unconditional", "on", "--json"))
    assert fw["unconditional"] == {"enabled": True, "destination": "2000"}
    fails(cli("forwards", "set", "1000", "--noanswer", "on"), 1, "no destination")
    fails(cli("forwards", "set", "1000", "--noanswer", "1000"), 1, "forward to itself",
          "HTTP 400")
    fails(cli("forwards", "set", "1000", "--noanswer", "+3311"), 1, "DID of the user")
    fails(cli("forwards", "set", "1000", "--noanswer", "abc"), 1, "HTTP 400")
    assert as_json(cli("forwards", "get", "1000", "--json")) == fw    # nothing changed
    fails(cli("forwards", "get", "4242"), 1, "HTTP 404")


# --- CSV import and export ---------------------------------------------------------------

HEADER = ["exten", "firstname", "lastname", "line_type", "sip_secret", "mds", "dids",
          "ring_seconds"]


def write_csv(path, rows, header=HEADER):
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_text(out.getvalue(), encoding="utf-8")
    return path


def numbers_of(cli):
    return [u["number"] for u in as_json(cli("users", "list", "--json"))]


def test_import_export_roundtrip(cli, proxy, tmp_path):
    add_mds(cli)
    src = write_csv(tmp_path / "users.csv", [
        ["1000", "Alice", "Martin", "ua", "secret", "mds1", "+33123456789", "25"],
        ["1001", "Bob", "", "sip", "bobpw", "mds1", "", ""],
        ["1002", "Carol", "Dé Lune", "webrtc", "cpw", "", "+3311;+3312", "30"]])
    result = ok(cli("import", src))
    assert "3 created, 0 updated" in result.stdout
    assert "[" not in result.stderr                        # no bar: stderr is not a TTY
    alice = as_json(cli("users", "show", "1000", "--json"))
    assert (alice["name"], alice["mds"], alice["dids"], alice["ring_seconds"]) == \
        ("Alice Martin", "mds1", ["+33123456789"], 25)
    assert as_json(cli("users", "show", "1002", "--json"))["dids"] == ["+3311", "+3312"]
    assert as_json(cli("import", src, "--json")) == {"created": 0, "updated": 3}

    exported = ok(cli("export")).stdout
    rows = list(csv.DictReader(io.StringIO(exported, newline="")))
    assert [r["exten"] for r in rows] == ["1000", "1001", "1002"]
    assert all(r["sip_secret"] == "" and len(r["ha1"]) == 32 for r in rows)
    assert rows[2]["lastname"] == "Dé Lune" and rows[2]["dids"] == "+3311;+3312"

    before = as_json(cli("users", "list", "--json"))
    result = ok(cli("export", tmp_path / "out.csv"))
    assert "exported 3 user(s)" in result.stdout
    assert (tmp_path / "out.csv").read_text(encoding="utf-8") == exported
    assert as_json(cli("export", tmp_path / "out2.csv", "--json"))["users"] == 3
    # Importing an export changes nothing, passwords included (ha1).
    assert as_json(cli("import", tmp_path / "out.csv", "--json")) == \
        {"created": 0, "updated": 3}
    assert as_json(cli("users", "list", "--json")) == before
    assert proxy.api("GET", "/api/v1/users/1001/forwards", auth=("1001", "bobpw"))[0] == 200
    # ... and from stdin.
    assert as_json(cli("import", "-", "--json", input=exported)) == \
        {"created": 0, "updated": 3}
    fails(cli("export", tmp_path / "no" / "such" / "dir.csv"), 2, "cannot write")


def test_import_dry_run_changes_nothing(cli, tmp_path):
    src = write_csv(tmp_path / "users.csv", [["1000", "A", "B", "ua", "pw", "", "", ""]])
    result = ok(cli("import", src, "--dry-run"))
    assert "1 row(s) valid" in result.stdout and "nothing imported" in result.stdout
    assert as_json(cli("import", src, "--dry-run", "--json"))["dry_run"] is True
    assert numbers_of(cli) == []


def test_import_refused_lists_every_bad_line(cli, tmp_path):
    src = write_csv(tmp_path / "bad.csv", [
        ["1000", "A", "", "ua", "pw", "", "", ""],
        ["10x1", "B", "", "ua", "pw", "", "", ""],               # line 3
        ["1002", "C", "", "isdn", "pw", "", "", ""],             # line 4
        ["1003", "D", "", "ua", "pw", "nowhere", "", ""],        # line 5: unknown MDS
        ["1004", "E", "", "ua", "pw", "", "", "999"]])           # line 6
    result = fails(cli("import", src), 1, "4 bad lines", "nothing imported",
                   "line 3: exten", "line 4: line_type", "line 5: unknown MDS",
                   "line 6: ring_seconds")
    assert "line 2:" not in result.stderr
    body = json.loads(fails(cli("import", src, "--json"), 1).stdout)
    assert [item["line"] for item in body["lines"]] == [3, 4, 5, 6]
    assert numbers_of(cli) == []
    # A bad header is line 1.
    bad_header = write_csv(tmp_path / "header.csv", [["1000", "A"]], header=["exten", "nom"])
    fails(cli("import", bad_header), 1, "line 1:", "nom")
    (tmp_path / "empty.csv").write_text("")
    fails(cli("import", tmp_path / "empty.csv"), 1, "line 1:")
    (tmp_path / "latin1.csv").write_bytes("exten,firstname,line_type,sip_secret\n"
                                          "1000,Andr\xe9,ua,pw\n".encode("latin-1"))
    fails(cli("import", tmp_path / "latin1.csv"), 1, "UTF-8", "line 2:")
    assert numbers_of(cli) == []


def big_rows(count, start=20000, mds="mds1"):
    line_types = ("ua", "sip", "webrtc")
    return [[str(start + i), f"First{i}", f"Last {i}", line_types[i % 3], f"pw-{i}", mds,
             f"+3340{start + i}", str(10 + i % 50)] for i in range(count)]


def test_import_in_one_request_with_an_upload_progress_bar(cli, tmp_path):
    """A bad line anywhere imports nothing; line numbers are the file's (a quoted name
    spanning two lines included)."""
    add_mds(cli)
    rows = big_rows(300)
    rows[10][1] = "Two\nLines"                  # record of file lines 12-13
    good = write_csv(tmp_path / "good.csv", rows)
    bad_rows = [list(r) for r in rows]
    bad_rows[150][3] = "isdn"                   # file line 153 (one more: the quoted name)
    bad_rows[299][6] = "not-a-did"              # file line 302, the last one
    bad_rows[200][0] = rows[5][0]               # file line 203: same exten as line 7
    bad = write_csv(tmp_path / "bad.csv", bad_rows)

    result = fails(cli("import", bad), 1, "3 bad lines", "nothing imported",
                   "line 153: line_type", "line 203: exten", "line 302: invalid DID")
    assert numbers_of(cli) == []
    assert "line 7" in result.stderr            # the first occurrence is named

    result = ok(cli("import", good, "--progress"))
    assert "300 created, 0 updated" in result.stdout
    assert "uploading" in result.stderr and "100%" in result.stderr
    assert len(numbers_of(cli)) == 300
    assert as_json(cli("users", "show", rows[10][0], "--json"))["name"] == \
        "Two\nLines Last 10"
    assert as_json(cli("import", good, "--json")) == {"created": 0, "updated": 300}


def test_import_did_conflicts_are_refused_before_any_write(cli, tmp_path):
    add_mds(cli)
    rows = big_rows(100)
    rows[90][6] = rows[3][6]                    # same DID as line 5
    rows[95][6] = rows[1][0]                    # a DID that is another new user's number
    src = write_csv(tmp_path / "dids.csv", rows)
    fails(cli("import", src), 1, "line 92: DID", "line 97: DID", "nothing imported")
    assert numbers_of(cli) == []


def test_import_of_10000_users(cli, tmp_path, capsys):
    add_mds(cli)
    src = write_csv(tmp_path / "10k.csv", big_rows(10000, start=100000))
    size = src.stat().st_size
    assert size > 12 * 1024 * 40                # far over the old 12 KiB request limit
    started = time.monotonic()
    result = cli("import", src, "--json", timeout=900)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, (result.stdout, result.stderr[-2000:])
    assert json.loads(result.stdout) == {"created": 10000, "updated": 0}
    listed = as_json(cli("users", "list", "--json", timeout=300))
    assert len(listed) == 10000
    assert listed[0]["number"] == "100000" and listed[-1]["number"] == "109999"
    with capsys.disabled():
        print(f"\nua-admin import of 10,000 users ({size} bytes, one request): "
              f"{elapsed:.1f} s")
