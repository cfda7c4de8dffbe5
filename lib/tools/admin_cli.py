"""ua-admin: the admin API (contract section 9) from a shell. Standard library and tqdm (the upload's progress bar).

    ua-admin [--url URL] [--token TOKEN] [--json] COMMAND ...

The API is at --url, else $UA_API_URL, else http://$UA_LISTEN:$UA_API_PORT (defaults
127.0.0.1 and 8089). The admin token is --token, else $UA_API_TOKEN, else the file
api_token of the proxy's var directory ($UA_VAR_DIR, default var/ of this repository)
when present. Global options may also follow the command (`ua-admin users list --json`).

Exit status: 0 done, 1 the API refused the request (4xx; the error, and for an import
every bad line, goes to stderr), 2 usage error, 3 the API cannot be reached or failed
(5xx). Output is for humans (tables, `key: value`) unless --json, which prints the API's
JSON on stdout.

CSV import (`ua-admin import FILE.csv`): the whole file in one request, all or nothing
(the API takes up to UA_API_MAX_BODY, 32 MiB: a hundred thousand users and more), with
a progress bar for the upload on a terminal (tqdm); `--dry-run` validates every line and
stores nothing. Line numbers in errors are those of the file (the header is line 1).
"""
import argparse
import csv
import io
import json
import os
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tqdm import tqdm

from lib import config

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "/api/v1"
UPLOAD_BLOCK = 64 * 1024         # bytes sent between two updates of the progress bar
DEFAULT_TIMEOUT = 60.0
USER_FIELDS = ("number", "name", "line_type", "mds", "dids", "ring_seconds", "memberships")
FORWARD_RULES = ("unconditional", "busy", "noanswer")
EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


# --- errors ----------------------------------------------------------------------------

class CliError(Exception):
    """Ends the command with `code`; `lines` are [(line, error)] of a CSV file."""

    def __init__(self, code, message, lines=None, body=None, status=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.lines = lines or []
        self.body = body          # what --json prints, when there is something to print
        self.status = status      # the HTTP status, when the API answered


def refused(message, lines=None, body=None):
    return CliError(EXIT_REFUSED, message, lines, body)


# --- HTTP ------------------------------------------------------------------------------

def default_url(cfg):
    if cfg.api_url:
        return cfg.api_url
    host = cfg.listen
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"                        # an IPv6 address
    return f"http://{host}:{cfg.api_port}"


def default_token(cfg):
    if cfg.api_token:
        return cfg.api_token
    path = Path(cfg.var_dir or ROOT / "var") / "api_token"
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


class Client:
    def __init__(self, url, token, timeout=DEFAULT_TIMEOUT, insecure=False):
        url = url.rstrip("/")
        if url.endswith(PREFIX):
            url = url[:-len(PREFIX)]
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise CliError(EXIT_USAGE, f"--url must be http://host:port or https://host:port, "
                                       f"not {url!r}")
        self.url = url
        self.token = token
        self.timeout = timeout
        self.context = None
        if insecure and parts.scheme == "https":
            self.context = ssl._create_unverified_context()

    def request(self, method, path, body=None, *, query=None, content_type=None, raw=False,
                progress=None):
        """(status, parsed JSON body or None; bytes when raw) of a 2xx answer. Raises
        CliError: 1 for a 4xx, 3 for a 5xx or no answer. progress: a tqdm bar the upload
        of a bytes body advances."""
        url = self.url + PREFIX + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None
        if body is not None:
            if isinstance(body, bytes):
                data = body
            else:
                data = json.dumps(body).encode()
                content_type = content_type or "application/json"
        req = urllib.request.Request(url, data=data, method=method)
        if progress is not None and data:
            req.data = _blocks(data, progress)
            req.add_header("Content-Length", str(len(data)))
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        if content_type:
            req.add_header("Content-Type", content_type)
        req.add_header("Accept", "application/json" if not raw else "*/*")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self.context) as resp:
                status, payload = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, payload = err.code, err.read()
            parsed = _parse_json(payload)
            message = parsed.get("error") if isinstance(parsed, dict) else None
            message = message or payload.decode("utf-8", "replace").strip() or err.reason
            text = f"{message} (HTTP {status})"
            if status == 401 and not self.token:
                text += ": no admin token (--token, UA_API_TOKEN or var/api_token)"
            code = EXIT_UNREACHABLE if status >= 500 else EXIT_REFUSED
            raise CliError(code, text, body=parsed, status=status) from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise CliError(EXIT_UNREACHABLE, f"cannot reach the API at {self.url}: {reason}") \
                from None
        except ValueError as err:                  # e.g. a malformed URL
            raise CliError(EXIT_USAGE, f"bad URL {url!r}: {err}") from None
        if raw:
            return status, payload
        return status, _parse_json(payload)

    def events(self, path):
        """(event, parsed data) of a Server-Sent Events stream, as they come."""
        req = urllib.request.Request(self.url + PREFIX + path, method="GET")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        # the stream sends a comment at least every 15 s
        timeout = max(self.timeout, 30)
        try:
            resp = urllib.request.urlopen(req, timeout=timeout, context=self.context)
        except urllib.error.HTTPError as err:
            parsed = _parse_json(err.read())
            message = parsed.get("error") if isinstance(parsed, dict) else err.reason
            raise CliError(EXIT_UNREACHABLE if err.code >= 500 else EXIT_REFUSED,
                           f"{message} (HTTP {err.code})", body=parsed, status=err.code) \
                from None
        except (urllib.error.URLError, OSError) as err:
            raise CliError(EXIT_UNREACHABLE, f"cannot reach the API at {self.url}: "
                                             f"{getattr(err, 'reason', err)}") from None
        with resp:
            event = None
            for raw in resp:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event:
                    yield event, _parse_json(line[5:].strip().encode())
                    event = None


def _blocks(data, progress):
    view = memoryview(data)
    for start in range(0, len(data), UPLOAD_BLOCK):
        block = view[start:start + UPLOAD_BLOCK]
        yield block
        progress.update(len(block))


def _parse_json(payload):
    if not payload:
        return None
    try:
        return json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None


def quote(segment):
    return urllib.parse.quote(segment, safe="")


# --- output ----------------------------------------------------------------------------

def emit_json(value):
    print(json.dumps(value, indent=2, ensure_ascii=False))


def show(value):
    """A `key: value` block."""
    width = max((len(k) for k in value), default=0)
    for key, item in value.items():
        print(f"{key + ':':<{width + 1}} {fmt(item)}")


def fmt(value):
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(fmt(v) for v in value) if value else "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={fmt(v)}" for k, v in value.items())
    return str(value)


def table(headers, rows):
    rows = [[fmt(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    for row in [list(headers)] + rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


def memberships_text(m):
    if not isinstance(m, dict):
        return fmt(m)
    parts = [f"{k}={fmt(v)}" for k, v in m.items()
             if v not in (None, False, [], "")]
    return ", ".join(parts) if parts else "-"


def show_user(user):
    view = {k: user.get(k) for k in ("number", "name", "line_type", "mds", "dids",
                                      "ring_seconds")}
    view.update({k: v for k, v in user.items() if k not in view and k != "memberships"})
    view["memberships"] = memberships_text(user.get("memberships"))
    show(view)


def rule_text(rule):
    if not isinstance(rule, dict):
        return fmt(rule)
    state = "on" if rule.get("enabled") else "off"
    dest = rule.get("destination")
    return f"{state} -> {dest}" if dest else state


def show_forwards(fw):
    view = {name: rule_text(fw.get(name)) for name in FORWARD_RULES}
    view["dnd"] = "on" if fw.get("dnd") else "off"
    show(view)


def show_device(dev):
    registered = dev.get("registered") or {}
    show({"selected": dev.get("selected"), "effective": dev.get("effective"),
          "reason": dev.get("reason"),
          "registered": ", ".join(f"{k}={'yes' if v else 'no'}"
                                  for k, v in registered.items()) or "-"})


# --- users -----------------------------------------------------------------------------

def user_body(args, base):
    body = {k: base[k] for k in USER_FIELDS if k in base}
    if args.name is not None:
        body["name"] = args.name
    if args.password is not None:
        body["password"] = args.password
    if args.line_type is not None:
        body["line_type"] = args.line_type
    if args.mds is not None:
        body["mds"] = args.mds or None
    if args.no_dids:
        body["dids"] = []
    if args.did:
        body["dids"] = list(args.did)
    if args.ring_seconds is not None:
        body["ring_seconds"] = args.ring_seconds
    return body


def get_user(client, number):
    return client.request("GET", f"/users/{quote(number)}")[1]


def cmd_users_add(client, args):
    try:
        get_user(client, args.number)
    except CliError as exc:
        if exc.status != 404:
            raise
    else:
        raise refused(f"user {args.number} already exists (use `ua-admin users update`)")
    status, user = client.request("PUT", f"/users/{quote(args.number)}",
                                  user_body(args, {"number": args.number}))
    return done(args, user, f"created user {args.number}" if status == 201
                else f"updated user {args.number}", show_user)


def cmd_users_update(client, args):
    current = get_user(client, args.number)
    status, user = client.request("PUT", f"/users/{quote(args.number)}",
                                  user_body(args, current))
    return done(args, user, f"updated user {args.number}", show_user)


def cmd_users_show(client, args):
    user = get_user(client, args.number)
    if args.json:
        emit_json(user)
    else:
        show_user(user)


def cmd_users_list(client, args):
    users = client.request("GET", "/users")[1] or []
    if args.json:
        emit_json(users)
        return
    table(("NUMBER", "NAME", "LINE", "MDS", "DIDS", "RING"),
          [(u.get("number"), u.get("name"), u.get("line_type"), u.get("mds"), u.get("dids"),
            u.get("ring_seconds")) for u in users])
    print(f"{len(users)} user(s)", file=sys.stderr)


def cmd_users_delete(client, args):
    client.request("DELETE", f"/users/{quote(args.number)}")
    return done(args, {"deleted": args.number}, f"deleted user {args.number}")


def done(args, body, message, render=None):
    if args.json:
        emit_json(body)
    else:
        print(message)
        if render is not None and body:
            render(body)


# --- deskphone control (contract section 12) -------------------------------------------

def show_call(call):
    print(f"{call['id']}  {call['state']:<9} {call['direction']:<3} {call['device'] or '-':<9} "
          f"{call['peer'] or '-'}  since {call['since']}")


def cmd_calls(client, args):
    calls = client.request("GET", f"/users/{quote(args.number)}/calls")[1]
    if args.json:
        emit_json(calls)
        return
    for call in calls:
        show_call(call)
    print(f"{len(calls)} call(s) in progress", file=sys.stderr)


def cmd_dial(client, args):
    body = client.request("POST", f"/users/{quote(args.number)}/calls",
                          {"destination": args.destination})[1]
    done(args, body, f"user {args.number}: the deskphone calls {args.destination} "
                     f"(call {body['id']})")


def cmd_hangup(client, args):
    client.request("DELETE", f"/users/{quote(args.number)}/calls/{quote(args.id)}")
    done(args, {"hung_up": args.id}, f"user {args.number}: call {args.id} hung up")


def cmd_answer(client, args):
    client.request("POST", f"/users/{quote(args.number)}/calls/{quote(args.id)}/answer")
    done(args, {"answered": args.id}, f"user {args.number}: call {args.id} answered on the "
                                      "deskphone")


def cmd_events(client, args):
    """Print the user's live events until interrupted (or --count of them)."""
    for seen, (event, data) in enumerate(client.events(f"/users/{quote(args.number)}/events"),
                                         1):
        if args.json:       # one JSON object a line: a stream has no end to wait for
            print(json.dumps({"event": event, "data": data}, ensure_ascii=False))
        else:
            print(f"{event}: {json.dumps(data, separators=(', ', ': '))}")
        sys.stdout.flush()
        if args.count and seen >= args.count:
            return


# --- device, forwards ------------------------------------------------------------------

def cmd_device_get(client, args):
    dev = client.request("GET", f"/users/{quote(args.number)}/device")[1]
    emit_json(dev) if args.json else show_device(dev)


def cmd_device_set(client, args):
    dev = client.request("PUT", f"/users/{quote(args.number)}/device",
                         {"device": args.device})[1]
    done(args, dev, f"user {args.number}: device {args.device} selected", show_device)


def cmd_forwards_get(client, args):
    fw = client.request("GET", f"/users/{quote(args.number)}/forwards")[1]
    emit_json(fw) if args.json else show_forwards(fw)


def cmd_forwards_set(client, args):
    current = client.request("GET", f"/users/{quote(args.number)}/forwards")[1] or {}
    body = {}
    for name in FORWARD_RULES:
        rule = current.get(name) or {}
        rule = {"enabled": bool(rule.get("enabled")), "destination": rule.get("destination")}
        given = getattr(args, name)
        if given == "off":
            rule["enabled"] = False
        elif given == "on":
            if not rule["destination"]:
                raise refused(f"{name}: no destination to turn on (give one: --{name} DEST)")
            rule["enabled"] = True
        elif given is not None:
            rule = {"enabled": True, "destination": given}
        body[name] = rule
    body["dnd"] = bool(current.get("dnd")) if args.dnd is None else args.dnd == "on"
    fw = client.request("PUT", f"/users/{quote(args.number)}/forwards", body)[1]
    done(args, fw, f"user {args.number}: forwarding rules saved", show_forwards)


# --- MDS -------------------------------------------------------------------------------

def cmd_mds_add(client, args):
    if not args.replace:
        try:
            client.request("GET", f"/mds/{quote(args.name)}")
        except CliError as exc:
            if exc.status != 404:
                raise
        else:
            raise refused(f"MDS {args.name} already exists (--replace to replace it)")
    status, record = client.request("PUT", f"/mds/{quote(args.name)}",
                                    {"uri": args.uri, "addresses": list(args.address or [])})
    done(args, record, f"{'created' if status == 201 else 'replaced'} MDS {args.name}",
         lambda r: show({k: v for k, v in r.items()}))


def cmd_mds_list(client, args):
    items = client.request("GET", "/mds")[1] or []
    if args.json:
        emit_json(items)
        return
    table(("NAME", "URI", "ADDRESSES", "UP"),
          [(m.get("name"), m.get("uri"), m.get("addresses"),
            "?" if m.get("up") is None else m.get("up")) for m in items])


def cmd_mds_delete(client, args):
    client.request("DELETE", f"/mds/{quote(args.name)}")
    done(args, {"deleted": args.name}, f"deleted MDS {args.name}")


# --- CSV import ------------------------------------------------------------------------

def read_csv(path):
    try:
        raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise CliError(EXIT_USAGE, f"cannot read {path}: {exc.strerror or exc}") from None
    if not raw.strip():
        raise refused("the file is empty (a header line is required)", [(1, "no header")])
    return raw


def cmd_import(client, args):
    raw = read_csv(args.file)
    enabled = (args.progress or sys.stderr.isatty()) and not args.quiet
    with tqdm(total=len(raw), unit="B", unit_scale=True, unit_divisor=1024,
              desc="uploading", file=sys.stderr, disable=not enabled) as bar:
        try:
            _, body = client.request("POST", "/users/import", raw,
                                     query={"dry_run": "1"} if args.dry_run else None,
                                     content_type="text/csv; charset=utf-8", progress=bar)
        except CliError as exc:
            if isinstance(exc.body, dict) and isinstance(exc.body.get("lines"), list):
                exc.lines = [(item.get("line"), item.get("error"))
                             for item in exc.body["lines"] if isinstance(item, dict)]
                exc.message = f"{exc.body.get('error') or exc.message} in {args.file}, " \
                              "nothing imported"
            raise
    body = body or {}
    if args.json:
        emit_json(body)
    elif args.dry_run:
        print(f"{body.get('created', 0) + body.get('updated', 0)} row(s) valid "
              f"({body.get('created', 0)} to create, {body.get('updated', 0)} to update); "
              "nothing imported (dry run)")
    else:
        print(f"imported: {body.get('created', 0)} created, {body.get('updated', 0)} updated")


def cmd_export(client, args):
    _, payload = client.request("GET", "/users/export", raw=True)
    if args.file in (None, "-"):
        sys.stdout.flush()
        sys.stdout.buffer.write(payload)
        sys.stdout.buffer.flush()
        return
    try:
        Path(args.file).write_bytes(payload)
    except OSError as exc:
        raise CliError(EXIT_USAGE, f"cannot write {args.file}: {exc.strerror or exc}") \
            from None
    rows = max(sum(1 for _ in csv.reader(io.StringIO(payload.decode("utf-8", "replace"),
                                                     newline=""))) - 1, 0)
    if args.json:
        emit_json({"file": args.file, "users": rows, "bytes": len(payload)})
    else:
        print(f"exported {rows} user(s) to {args.file}")


# --- command line ----------------------------------------------------------------------

def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def global_options(parser, suppress):
    """--url, --token, --json... on the main parser (with defaults) and again on every
    command (SUPPRESS: given only there, they override the main parser's)."""
    d = (lambda v: argparse.SUPPRESS) if suppress else (lambda v: v)
    g = parser.add_argument_group("connection and output")
    g.add_argument("--url", default=d(None), metavar="URL",
                   help="API base URL (env UA_API_URL; default "
                        "http://$UA_LISTEN:$UA_API_PORT, i.e. http://127.0.0.1:8089)")
    g.add_argument("--token", default=d(None), metavar="TOKEN",
                   help="admin API token (env UA_API_TOKEN; default: var/api_token)")
    g.add_argument("--json", action="store_true", default=d(False),
                   help="print the API's JSON (machine output)")
    g.add_argument("--timeout", type=float, default=d(DEFAULT_TIMEOUT), metavar="SECONDS",
                   help=f"per-request timeout (default {DEFAULT_TIMEOUT:g})")
    g.add_argument("--insecure", action="store_true", default=d(False),
                   help="https: do not verify the server's certificate")


def build_parser():
    fmt_class = argparse.RawDescriptionHelpFormatter
    common = argparse.ArgumentParser(add_help=False)
    global_options(common, suppress=True)

    parser = argparse.ArgumentParser(
        prog="ua-admin", formatter_class=fmt_class,
        description="Administer the Unique Account edge proxy through its HTTP API.",
        epilog="exit status: 0 ok, 1 refused by the API, 2 usage error, "
               "3 API unreachable or failing (5xx)")
    global_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(parent, name, func, help, **kw):
        p = parent.add_parser(name, parents=[common], help=help, description=help,
                              formatter_class=fmt_class, **kw)
        p.set_defaults(func=func)
        return p

    def group(name, help):
        p = sub.add_parser(name, help=help, description=help)
        return p.add_subparsers(dest="action", metavar="ACTION", required=True)

    # users
    users = group("users", "create, change, show, list and delete users")

    def user_fields(p, creating):
        p.add_argument("number", help="the user's number (1 to 20 digits)")
        p.add_argument("--name", required=creating, help="display name")
        p.add_argument("--password", required=creating,
                       help="SIP password" + ("" if creating else " (default: unchanged)"))
        p.add_argument("--line-type", required=creating, choices=("ua", "sip", "webrtc"))
        p.add_argument("--mds", metavar="NAME", help="MDS of the user ('' for none)")
        p.add_argument("--did", action="append", metavar="DID",
                       help="a DID of the user (repeatable; replaces the list)")
        p.add_argument("--no-dids", action="store_true", help="remove every DID")
        p.add_argument("--ring-seconds", type=positive_int, metavar="N",
                       help="seconds the user's devices ring (1-300)")

    user_fields(command(users, "add", cmd_users_add,
                        "create a user (refused when the number exists)"), True)
    user_fields(command(users, "update", cmd_users_update,
                        "change the given fields of an existing user"), False)
    p = command(users, "show", cmd_users_show, "show one user")
    p.add_argument("number")
    command(users, "list", cmd_users_list, "list every user")
    p = command(users, "delete", cmd_users_delete, "delete a user and all its state")
    p.add_argument("number")

    # import / export
    p = command(sub, "import", cmd_import,
                "create or update users from a CSV file (all or nothing)",
                epilog="The whole file is one request: a bad line anywhere imports nothing.")
    p.add_argument("file", metavar="FILE.csv", help="the CSV file ('-' for stdin)")
    p.add_argument("--dry-run", action="store_true", help="validate only, change nothing")
    p.add_argument("--progress", action="store_true",
                   help="show the upload's progress bar on stderr even when it is not a "
                        "terminal")
    p.add_argument("--quiet", action="store_true", help="never show the progress bar")
    p = command(sub, "export", cmd_export, "write every user as CSV")
    p.add_argument("file", nargs="?", metavar="FILE", help="output file (default: stdout)")

    # device
    device = group("device", "the device a Unique Account user rings on")
    p = command(device, "get", cmd_device_get, "show the selected and effective device")
    p.add_argument("number")
    p = command(device, "set", cmd_device_set, "select the device that rings")
    p.add_argument("number")
    p.add_argument("device", choices=("webrtc", "deskphone"))

    # deskphone control
    p = command(sub, "calls", cmd_calls, "list a user's calls in progress, with their ids")
    p.add_argument("number")
    p = command(sub, "dial", cmd_dial,
                "click-to-dial: the user's deskphone answers by itself and calls DEST")
    p.add_argument("number")
    p.add_argument("destination", metavar="DEST")
    p = command(sub, "hangup", cmd_hangup,
                "hang up a call (answered), decline it (ringing) or cancel it (placed)")
    p.add_argument("number")
    p.add_argument("id", metavar="ID", help="the call's id (ua-admin calls)")
    p = command(sub, "answer", cmd_answer, "answer on the deskphone a call ringing there")
    p.add_argument("number")
    p.add_argument("id", metavar="ID")
    p = command(sub, "events", cmd_events,
                "print a user's live events (device, call, presence, voicemail)")
    p.add_argument("number")
    p.add_argument("--count", type=positive_int, metavar="N", help="stop after N events")

    # forwards
    forwards = group("forwards", "call forwarding rules and do-not-disturb")
    p = command(forwards, "get", cmd_forwards_get, "show the forwarding rules")
    p.add_argument("number")
    p = command(forwards, "set", cmd_forwards_set,
                "change some forwarding rules (the others keep their value)",
                epilog="DEST: a number, 'voicemail', 'off' (disable the rule, keeping its "
                       "destination) or 'on' (enable it again with its destination).")
    p.add_argument("number")
    for name in FORWARD_RULES:
        p.add_argument(f"--{name}", metavar="DEST", help=f"{name} forward")
    p.add_argument("--dnd", choices=("on", "off"), help="do not disturb")

    # mds
    mds = group("mds", "the MDS (Asterisk) nodes behind the proxy")
    p = command(mds, "add", cmd_mds_add, "declare an MDS (refused when the name exists)")
    p.add_argument("name")
    p.add_argument("--uri", required=True, metavar="sip:host:port", help="where calls go")
    p.add_argument("--address", action="append", metavar="IP",
                   help="an address trusted as this MDS (repeatable)")
    p.add_argument("--replace", action="store_true", help="replace an existing MDS")
    command(mds, "list", cmd_mds_list, "list the MDS nodes and whether they answer")
    p = command(mds, "delete", cmd_mds_delete, "remove an MDS (refused while users use it)")
    p.add_argument("name")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.func is cmd_forwards_set and all(getattr(args, n) is None for n in FORWARD_RULES + ("dnd",)):
        parser.error("forwards set: give at least one of --unconditional, --busy, "
                     "--noanswer, --dnd")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    try:
        cfg = config.load()
        client = Client(args.url or default_url(cfg), args.token or default_token(cfg),
                        timeout=args.timeout, insecure=args.insecure)
        args.func(client, args)
    except CliError as exc:
        if args.json and exc.body is not None:
            emit_json(exc.body)
        print(f"ua-admin: error: {exc.message}", file=sys.stderr)
        for line, error in exc.lines:
            where = f"line {line}" if isinstance(line, int) else str(line)
            print(f"  {where}: {error}", file=sys.stderr)
        return exc.code
    except BrokenPipeError:
        # `ua-admin users list | head`: stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        print("ua-admin: interrupted", file=sys.stderr)
        return 130
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
