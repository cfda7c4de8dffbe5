"""CSV import and export of users (contract section 9), XiVO/Wazo user-import columns.

    POST /api/v1/users/import[?dry_run=1]   (admin)  body: text/csv, UTF-8
    GET  /api/v1/users/export               (admin)  -> text/csv; charset=utf-8

Columns (header row required, it is line 1; order free):

    exten, firstname, lastname, line_type, sip_secret, ha1, mds, dids, ring_seconds,
    groups, queues, pickup_groups, paging_groups, callfilters, agent, switchboard

`exten` and `line_type` must be in the header; a missing other column takes its default
(empty: no DIDs, no MDS, ring_seconds 30, no memberships). An unknown, repeated or missing
required column is refused (400 naming it). Per field:

- `name` is `firstname + " " + lastname`, stripped as a whole (firstname and lastname are
  not stripped one by one, so an exported name comes back unchanged).
- lists (`dids` and the memberships) are separated by `;`; items are stripped and empty
  items ignored. `agent` is an agent number or empty; `switchboard` is 0, 1 or empty (0).
- `sip_secret` is taken as is (not stripped); every other field is stripped.
- `ha1` is 32 lowercase hex digits, stored as is. It must be md5(exten:UA_DOMAIN:secret):
  that cannot be checked without the secret, so a wrong HA1 is only seen when the phone
  fails to register. With both sip_secret and ha1 on one row, they must agree.
- Each row creates or replaces user `exten`, like PUT /api/v1/users/{number}: columns
  absent from the header take their default. An empty sip_secret and an empty ha1 keep the
  current password; a new user needs one of them.

All-or-nothing: every row is validated (lib.users.provisioning's checks: line types, the
features a `ua` line refuses, DIDs unique across the file and the store, known MDS...)
and on any error nothing is stored and the answer is
`400 {"error": "N bad lines", "lines": [{"line": N, "error": "..."}]}` listing every bad
line (one error per line, N = the physical line where the CSV record starts). A row
refused by the CSV checks is left out of the store checks, so a row conflicting only with
such a row is not reported. Success: `200 {"created": N, "updated": N}`; `?dry_run=1`
validates the same way, stores nothing and adds `"dry_run": true`.

A file of 100,000 users is one request and one transaction (lib.users.provisioning.put_users):
the API server runs it in a thread of its own, so other requests go on meanwhile.

Export: one row per user ordered by number, `ha1` from the store and `sip_secret` empty,
so importing an export changes nothing. A record the CSV cannot carry unchanged (a name
with leading or trailing blanks, a membership with `;` or surrounding blanks, set through
the JSON API) makes the export answer 409 naming the user, rather than export it altered:
every record is checked (check_exportable) before the rows are streamed (export_chunks),
a batch of users at a time.
"""
import csv
import io
import re

from lib.store import codec, keyspace
from lib.users import profiles, provisioning, validation

COLUMNS = ("exten", "firstname", "lastname", "line_type", "sip_secret", "ha1", "mds",
           "dids", "ring_seconds", "groups", "queues", "pickup_groups", "paging_groups",
           "callfilters", "agent", "switchboard")
CSV_TYPE = "text/csv; charset=utf-8"
REQUIRED = ("exten", "line_type")
LIST_SEP = ";"
HA1_LOWER_RE = re.compile(r"[0-9a-f]{32}")
RING_RE = re.compile(r"[0-9]{1,6}")
EXPORT_BATCH = 2000


class Refused(Exception):
    """A refused import (400): body is {"error": ..., "lines": [{"line", "error"}]}."""

    def __init__(self, body):
        super().__init__(body)          # args: what pickling between processes keeps
        self.body = body


class Unexportable(Exception):
    """A record the CSV cannot carry unchanged (409)."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message


class _CsvError(Exception):
    """A whole-request CSV problem (header, encoding, syntax): 400 with that one line."""

    def __init__(self, line, message, summary=None):
        super().__init__(message)
        self.line = line
        self.message = message
        self.summary = summary or message


def _bad(lines):
    lines = sorted(lines, key=lambda item: item["line"])
    n = len(lines)
    return Refused({"error": f"{n} bad line{'s' if n != 1 else ''}", "lines": lines})


# --- parsing -----------------------------------------------------------------------------

def _decode(raw, ctype):
    charset = re.search(r"charset\s*=\s*\"?([^\";\s]+)", ctype, re.I)
    if charset and charset.group(1).lower() not in ("utf-8", "utf8", "us-ascii"):
        raise _CsvError(1, f"charset {charset.group(1)} given: CSV must be UTF-8",
                        "CSV must be UTF-8")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise _CsvError(line, f"invalid UTF-8 byte 0x{raw[exc.start]:02x}: "
                              "CSV must be UTF-8", "CSV must be UTF-8") from None


def _records(text):
    """[(line, fields)] of the CSV text, the header first; raises _CsvError."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    out, line = [], 1
    try:
        for fields in reader:
            out.append((line, fields))
            line = reader.line_num + 1
    except csv.Error as exc:
        raise _CsvError(line, f"malformed CSV: {exc}") from None
    return out


def _header(fields):
    names = [f.strip() for f in fields]
    unknown = [n for n in names if n not in COLUMNS]
    if unknown:
        shown = ", ".join(repr(n) for n in unknown)
        hint = " (columns are separated by commas)" if any(";" in n for n in unknown) else ""
        raise _CsvError(1, f"unknown column{'s' if len(unknown) > 1 else ''} {shown}{hint}")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise _CsvError(1, f"column {twice[0]} appears twice")
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise _CsvError(1, f"missing column{'s' if len(missing) > 1 else ''} "
                           f"{', '.join(missing)}")
    return names


def _split(value):
    return [item.strip() for item in value.split(LIST_SEP) if item.strip()]


def _row(row, domain, existing):
    """(number, body for validate_user, ha1 or None) of one row; raises Invalid."""
    def get(column):
        return row.get(column, "").strip()

    number = get("exten")
    if not validation.valid_number(number):
        raise validation.Invalid("exten must be 1 to 20 digits")
    secret = row.get("sip_secret", "")
    given_ha1 = get("ha1") or None
    if len(secret) > validation.MAX_PASSWORD_LENGTH:
        raise validation.Invalid(
            f"sip_secret is longer than {validation.MAX_PASSWORD_LENGTH} characters")
    if given_ha1 is not None:
        if not HA1_LOWER_RE.fullmatch(given_ha1):
            raise validation.Invalid("ha1 must be 32 lowercase hexadecimal digits")
        if secret and given_ha1 != profiles.ha1(number, domain, secret):
            raise validation.Invalid(
                f"ha1 does not match sip_secret (it must be md5 of exten:{domain}:sip_secret)")
    if not secret and given_ha1 is None and number not in existing:
        raise validation.Invalid("sip_secret or ha1 is required for a new user")

    ring = get("ring_seconds")
    if ring and not RING_RE.fullmatch(ring):
        raise validation.Invalid(
            f"ring_seconds must be an integer from 1 to {validation.MAX_RING_SECONDS}")
    switchboard = get("switchboard")
    if switchboard not in ("", "0", "1"):
        raise validation.Invalid("switchboard must be 0 or 1")

    memberships = {key: _split(row.get(key, "")) for key in validation.MEMBERSHIP_LISTS}
    memberships["agent"] = get("agent") or None
    memberships["switchboard"] = switchboard == "1"
    body = {"name": f"{row.get('firstname', '')} {row.get('lastname', '')}".strip(),
            "line_type": get("line_type"), "mds": get("mds") or None,
            "dids": _split(row.get("dids", "")),
            "ring_seconds": int(ring) if ring else profiles.DEFAULT_RING_SECONDS,
            "memberships": memberships}
    if secret:
        body["password"] = secret
        given_ha1 = None            # equal to the secret's: the password path stores it
    return number, body, given_ha1


def _parse(r, domain, raw, ctype):
    """(entries, lines of entries, row errors {line: message}); raises _CsvError."""
    records = _records(_decode(raw, ctype))
    if not records or not any(f.strip() for f in records[0][1]):
        raise _CsvError(1, "the header row is required on line 1 (columns: "
                           + ", ".join(COLUMNS) + ")")
    names = _header(records[0][1])
    rows = []
    errors = {}
    for line, fields in records[1:]:
        if not any(f.strip() for f in fields):
            continue                    # blank line, or only separators
        if len(fields) != len(names):
            errors[line] = f"{len(fields)} fields, the header has {len(names)}"
            continue
        rows.append((line, dict(zip(names, fields))))

    numbers = sorted({n for n in (row.get("exten", "").strip() for _, row in rows)
                      if validation.valid_number(n)})
    existing = set()
    if numbers:
        member = r.smismember(keyspace.USERS_KEY, numbers)
        existing = {n for n, m in zip(numbers, member) if m}

    entries, entry_lines, first_line = [], [], {}
    for line, row in rows:
        try:
            entry = _row(row, domain, existing)
            if entry[0] in first_line:
                raise validation.Invalid(
                    f"exten {entry[0]} appears twice (first on line {first_line[entry[0]]})")
            first_line[entry[0]] = line
        except validation.ProvisioningError as exc:
            errors[line] = exc.message
            continue
        entries.append(entry)
        entry_lines.append(line)
    return entries, entry_lines, errors


# --- validation and storage --------------------------------------------------------------

class _DryRun(provisioning.Provisioning):
    """put_users with its whole validation (same reads, same checks) but no write."""

    def _write(self, pipe, writes):
        pass


def _store(r, domain, entries, lines, errors, dry_run):
    """Run provisioning.put_users on entries (for real only when nothing is wrong yet).
    Returns its results, or None with `errors` completed."""
    dry = _DryRun(r, domain)
    real = not dry_run and not errors
    try:
        return (provisioning.Provisioning(r, domain) if real else dry).put_users(entries)
    except validation.BatchError as exc:
        failed = dict(exc.errors)
    for index, err in failed.items():
        errors[lines[index]] = err.message
    # put_users stops after its per-record checks when one fails: check the store side
    # (MDS, DIDs) of the others too, so that every bad line is listed at once.
    rest = [i for i in range(len(entries)) if i not in failed]
    if rest:
        try:
            dry.put_users([entries[i] for i in rest])
        except validation.BatchError as exc:
            for index, err in exc.errors:
                errors.setdefault(lines[rest[index]], err.message)
    return None


def import_users(r, domain, raw, content_type="", dry_run=False):
    """Create or update the users of a CSV file (bytes), all or nothing. Returns
    {"created": N, "updated": N} (and "dry_run": true); raises Refused."""
    try:
        entries, lines, errors = _parse(r, domain, raw, content_type)
    except _CsvError as exc:
        raise Refused({"error": exc.summary,
                       "lines": [{"line": exc.line, "error": exc.message}]}) from None
    results = _store(r, domain, entries, lines, errors, dry_run) if entries else []
    if errors:
        raise _bad([{"line": line, "error": msg} for line, msg in errors.items()])
    created = sum(1 for was_created, _ in results if was_created)
    body = {"created": created, "updated": len(results) - created}
    if dry_run:
        body["dry_run"] = True
    return body


# --- export ------------------------------------------------------------------------------

def _export_row(profile, ha1_value):
    number, name = profile["number"], profile.get("name") or ""
    if name != name.strip():
        raise Unexportable(f"user {number}: name {name!r} has leading or trailing "
                                "blanks, which CSV import strips: fix it, then export")
    first, _, last = name.partition(" ")
    members = {**profiles.default_memberships(), **(profile.get("memberships") or {})}
    row = {"exten": number, "firstname": first, "lastname": last,
           "line_type": profile["line_type"], "sip_secret": "", "ha1": ha1_value or "",
           "mds": profile.get("mds") or "",
           "ring_seconds": str(profile.get("ring_seconds", profiles.DEFAULT_RING_SECONDS)),
           "agent": members["agent"] or "", "switchboard": "1" if members["switchboard"] else "0"}
    for key in ("dids",) + validation.MEMBERSHIP_LISTS:
        items = (profile.get("dids") or []) if key == "dids" else members[key]
        for item in items:
            if LIST_SEP in item or item != item.strip() or not item:
                raise Unexportable(f"user {number}: {key} item {item!r} cannot be "
                                        "written in CSV (contains ';' or blanks at its ends)")
        row[key] = LIST_SEP.join(items)
    agent = members["agent"]
    if agent is not None and agent != agent.strip():
        raise Unexportable(f"user {number}: agent {agent!r} has blanks at its ends")
    return [row[c] for c in COLUMNS]


def _numbers(r):
    return profiles.sort_numbers(codec.text(n) for n in r.smembers(keyspace.USERS_KEY))


def _batches(r, numbers, fields):
    for i in range(0, len(numbers), EXPORT_BATCH):
        pipe = r.pipeline(transaction=False)
        for n in numbers[i:i + EXPORT_BATCH]:
            pipe.hmget(keyspace.user_key(n), fields)
        yield pipe.execute()


def check_exportable(r):
    """The numbers to export, ordered; raises Unexportable before any row is sent."""
    numbers = _numbers(r)
    for batch in _batches(r, numbers, ["profile"]):
        for (raw_profile,) in batch:
            if raw_profile is not None:
                _export_row(profiles.profile_of(raw_profile), None)
    return numbers


def export_chunks(r, numbers):
    """The CSV text of these users, a batch of rows at a time (the header first)."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for batch in _batches(r, numbers, ["profile", "ha1"]):
        for raw_profile, raw_ha1 in batch:
            if raw_profile is not None:
                writer.writerow(_export_row(profiles.profile_of(raw_profile),
                                            codec.text(raw_ha1)))
        yield out.getvalue()
        out.seek(0)
        out.truncate()
    if not numbers:
        yield out.getvalue()

