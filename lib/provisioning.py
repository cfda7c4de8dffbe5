"""Provisioning of users and MDS nodes (contract section 9): validation and atomic writes.

Pure Python over a redis client; no Kamailio import. Every write that touches several
keys runs in one MULTI/EXEC under WATCH of what its validation read, so a refused
request changes nothing and two concurrent writers cannot both claim one DID or one MDS
address. A batch of users (put_users: a CSV import of 100,000) watches one key that every
provisioning change bumps (store.PROVISIONING_VERSION_KEY) rather than each key it read. Redis connection errors propagate (redis.ConnectionError / TimeoutError /
OSError): the caller answers 503.

Errors a caller can show to the client are ProvisioningError subclasses carrying an
HTTP status (400 Invalid, 404 NotFound, 409 Conflict).

Forwarding rules (contract section 5) live in the user's hash, field `forwards`: msgpack
of the full API shape (see DEFAULT_FORWARDS); an absent field means the defaults. Readers
(the routing code) go through normalize_forwards().
"""
import hashlib
import hmac
import ipaddress
import re

import redis

from lib import sipmsg, store

LINE_TYPES = ("sip", "webrtc", "ua")
DEVICES = ("webrtc", "deskphone")
DEFAULT_RING_SECONDS = 30
MAX_RING_SECONDS = 300
MAX_NAME_LENGTH = 256
MAX_PASSWORD_LENGTH = 256
MAX_DIDS = 100
MAX_MEMBERSHIP_ITEMS = 1000
MAX_MDS_ADDRESSES = 64
WATCH_RETRIES = 20

NUMBER_RE = re.compile(r"[0-9]{1,20}")
HA1_RE = re.compile(r"[0-9a-fA-F]{32}")
DID_RE = re.compile(r"\+?[0-9]{1,20}")
MDS_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")

USER_FIELDS = ("number", "name", "password", "line_type", "mds", "dids", "ring_seconds",
               "memberships")
MDS_FIELDS = ("name", "uri", "addresses")

# Forwarding rules (contract section 5).
FORWARD_RULES = ("unconditional", "busy", "noanswer")
FORWARD_FIELDS = FORWARD_RULES + ("dnd",)
FORWARD_RULE_FIELDS = ("enabled", "destination")
VOICEMAIL = "voicemail"
FORWARD_DEST_RE = re.compile(r"\+?[0-9*#]{1,32}")
DEFAULT_FORWARDS = {
    "unconditional": {"enabled": False, "destination": None},
    "busy": {"enabled": False, "destination": None},
    "noanswer": {"enabled": False, "destination": None},
    "dnd": False,
}

# Membership keys in the order they are checked, with the message naming the feature
# a `ua` line refuses (contract section 9: "naming the feature").
MEMBERSHIP_LISTS = ("groups", "queues", "pickup_groups", "paging_groups", "callfilters")
UA_UNSUPPORTED = (
    ("groups", "groups are not supported for Unique Account users"),
    ("queues", "queues are not supported for Unique Account users"),
    ("pickup_groups", "group pickup (pickup_groups) is not supported for Unique Account users"),
    ("paging_groups", "paging (paging_groups) is not supported for Unique Account users"),
    ("callfilters", "boss/secretary filters (callfilters) are not supported for Unique "
                    "Account users"),
    ("agent", "call-center agent (agent) is not supported for Unique Account users"),
    ("switchboard", "switchboard is not supported for Unique Account users"),
)

# Per-user keys removed with the user, besides its user hash and DID keys. Modules that add
# per-user state (forwards, history...) append their key function here.
USER_EXTRA_KEYS = [store.contacts_key, store.calls_key, store.history_key]


class ProvisioningError(Exception):
    status = 400

    def __init__(self, message):
        super().__init__(message)
        self.message = message


class Invalid(ProvisioningError):
    status = 400


class NotFound(ProvisioningError):
    status = 404


class Conflict(ProvisioningError):
    status = 409


class BatchError(ProvisioningError):
    """Some entries of put_users were refused; errors = [(index, ProvisioningError)]."""

    def __init__(self, errors):
        super().__init__(errors[0][1].message if errors else "invalid batch")
        self.errors = errors
        self.status = errors[0][1].status if len(errors) == 1 else 400


class Busy(Exception):
    """Too many concurrent writers on the same keys; the caller should answer 503."""


def ha1(number, domain, password):
    return hashlib.md5(f"{number}:{domain}:{password}".encode()).hexdigest()


def default_memberships():
    return {"groups": [], "queues": [], "pickup_groups": [], "paging_groups": [],
            "callfilters": [], "agent": None, "switchboard": False}


# A profile is stored without the fields, and memberships, that hold their default value:
# most users keep them, and leaving them out takes a provisioned user from 405 to 261 bytes
# of Redis (README, Benchmarks). Every read fills them back in (profile_of); records stored whole
# by earlier versions read the same.
PROFILE_FIELDS = ("number", "name", "line_type", "mds", "dids", "ring_seconds",
                  "memberships")


def _profile_defaults():
    return {"mds": None, "dids": [], "ring_seconds": DEFAULT_RING_SECONDS,
            "memberships": default_memberships()}


def pack_profile(profile):
    """The stored form of a validated profile (msgpack), defaults left out."""
    defaults = _profile_defaults()
    members = {k: v for k, v in profile["memberships"].items()
               if v != defaults["memberships"][k]}
    kept = {k: v for k, v in profile.items() if k not in defaults or v != defaults[k]}
    if members:
        kept["memberships"] = members
    return store.pack(kept)


def profile_of(raw):
    """The whole profile from its stored form (None for None): defaults filled back in."""
    stored = store.unpack(raw)
    if stored is None:
        return None
    merged = {**_profile_defaults(), **stored}
    merged["memberships"] = {**default_memberships(), **stored.get("memberships", {})}
    return {k: merged[k] for k in PROFILE_FIELDS}


def valid_number(number):
    return isinstance(number, str) and NUMBER_RE.fullmatch(number) is not None


def valid_mds_name(name):
    return isinstance(name, str) and MDS_NAME_RE.fullmatch(name) is not None


def _s(raw):
    return raw.decode() if isinstance(raw, bytes) else raw


def _sort_numbers(numbers):
    return sorted(numbers, key=lambda n: (len(n), n))


# --- validation (pure) -------------------------------------------------------------------

def _check_memberships(value):
    if value is None:
        return default_memberships()
    if not isinstance(value, dict):
        raise Invalid("memberships must be an object")
    out = default_memberships()
    for key, item in value.items():
        if key in MEMBERSHIP_LISTS:
            if not isinstance(item, list) or not all(isinstance(x, str) and x for x in item):
                raise Invalid(f"memberships.{key} must be a list of non-empty strings")
            if len(item) > MAX_MEMBERSHIP_ITEMS:
                raise Invalid(f"memberships.{key} has too many entries")
            out[key] = list(item)
        elif key == "agent":
            if item is not None and (not isinstance(item, str) or not item):
                raise Invalid("memberships.agent must be null or a non-empty string")
            out[key] = item
        elif key == "switchboard":
            if not isinstance(item, bool):
                raise Invalid("memberships.switchboard must be a boolean")
            out[key] = item
        else:
            raise Invalid(f"unknown field memberships.{key}")
    return out


def _check_record(body, kind, fields, id_field, id_value):
    """Raise Invalid unless `body` is a JSON object of known `fields` only, whose
    `id_field`, when given, repeats the identifier from the path."""
    if not isinstance(body, dict):
        raise Invalid(f"the {kind} record must be a JSON object")
    unknown = [k for k in body if k not in fields]
    if unknown:
        raise Invalid(f"unknown field {sorted(unknown)[0]}")
    if id_field in body and body[id_field] != id_value:
        raise Invalid(f"{id_field} in the body differs from the {id_field} in the path")


def validate_user(number, body, *, new, have_ha1=False):
    """The profile to store for `body` (a dict from JSON), raising Invalid.

    Checks that need no state only. `new`: the user does not exist yet, so a password (or
    an HA1 given by the caller, have_ha1) is required. Returns (profile, password or None).
    """
    if not valid_number(number):
        raise Invalid("number must be 1 to 20 digits")
    _check_record(body, "user", USER_FIELDS, "number", number)

    name = body.get("name")
    if not isinstance(name, str):
        raise Invalid("name is required and must be a string")
    if len(name) > MAX_NAME_LENGTH:
        raise Invalid(f"name is longer than {MAX_NAME_LENGTH} characters")

    password = body.get("password")
    if "password" in body:
        if not isinstance(password, str) or not password:
            raise Invalid("password must be a non-empty string")
        if len(password) > MAX_PASSWORD_LENGTH:
            raise Invalid(f"password is longer than {MAX_PASSWORD_LENGTH} characters")
    elif new and not have_ha1:
        raise Invalid("password is required to create a user")

    line_type = body.get("line_type")
    if line_type not in LINE_TYPES:
        raise Invalid("line_type is required and must be one of sip, webrtc, ua")

    mds = body.get("mds")
    if mds is not None and not valid_mds_name(mds):
        raise Invalid("mds must be null or an MDS name")

    dids = body.get("dids", [])
    if dids is None:
        dids = []
    if not isinstance(dids, list) or not all(isinstance(d, str) for d in dids):
        raise Invalid("dids must be a list of strings")
    for did in dids:
        if not DID_RE.fullmatch(did):
            raise Invalid(f"invalid DID {did!r}: digits with an optional leading +")
    if len(set(dids)) != len(dids):
        raise Invalid("dids lists the same DID twice")
    if len(dids) > MAX_DIDS:
        raise Invalid(f"at most {MAX_DIDS} DIDs per user")

    ring = body.get("ring_seconds", DEFAULT_RING_SECONDS)
    if ring is None:
        ring = DEFAULT_RING_SECONDS
    if isinstance(ring, bool) or not isinstance(ring, int) or not 1 <= ring <= MAX_RING_SECONDS:
        raise Invalid(f"ring_seconds must be an integer from 1 to {MAX_RING_SECONDS}")

    memberships = _check_memberships(body.get("memberships"))
    if line_type == "ua":
        for key, message in UA_UNSUPPORTED:
            if memberships[key]:
                raise Invalid(message)

    profile = {"number": number, "name": name, "line_type": line_type, "mds": mds,
               "dids": list(dids), "ring_seconds": ring, "memberships": memberships}
    return profile, password


def valid_forward_destination(value):
    """`voicemail` or a dialable number (`+`, digits, `*`, `#`; 1 to 32 characters)."""
    return isinstance(value, str) and (
        value == VOICEMAIL or FORWARD_DEST_RE.fullmatch(value) is not None)


def default_forwards():
    """A fresh copy of DEFAULT_FORWARDS (every rule off, no destination, dnd off); built
    by hand, as deepcopy was a visible share of an initial INVITE's CPU."""
    return {name: (dict(value) if isinstance(value, dict) else value)
            for name, value in DEFAULT_FORWARDS.items()}


def normalize_forwards(raw):
    """The full forwarding shape from what is stored: None (never set), the msgpack bytes
    of the `forwards` field, or an already decoded dict. Never raises: anything missing
    or malformed takes its default, so an enabled rule always has a valid destination.

    {"unconditional": {"enabled": bool, "destination": str|None}, "busy": {...},
     "noanswer": {...}, "dnd": bool}"""
    out = default_forwards()
    if isinstance(raw, (bytes, bytearray, memoryview)):
        try:
            raw = store.unpack(bytes(raw))
        except Exception:
            return out
    if not isinstance(raw, dict):
        return out
    for name in FORWARD_RULES:
        rule = raw.get(name)
        if not isinstance(rule, dict):
            continue
        dest = rule.get("destination")
        if not valid_forward_destination(dest):
            dest = None
        out[name] = {"enabled": rule.get("enabled") is True and dest is not None,
                     "destination": dest}
    out["dnd"] = raw.get("dnd") is True
    return out


def validate_forwards(number, body):
    """The forwarding rules to store for a PUT `body` (a dict from JSON), raising Invalid.

    The body replaces the whole set: a missing key takes its default. A destination equal
    to `number` (a forward to oneself) is refused; checks needing state are the caller's."""
    if not isinstance(body, dict):
        raise Invalid("the forwarding rules must be a JSON object")
    unknown = sorted(k for k in body if k not in FORWARD_FIELDS)
    if unknown:
        raise Invalid(f"unknown field {unknown[0]} (expected unconditional, busy, "
                      "noanswer, dnd)")
    out = default_forwards()
    for name in FORWARD_RULES:
        if name not in body:
            continue
        rule = body[name]
        if not isinstance(rule, dict):
            raise Invalid(f"{name} must be an object with enabled and destination")
        unknown = sorted(k for k in rule if k not in FORWARD_RULE_FIELDS)
        if unknown:
            raise Invalid(f"unknown field {name}.{unknown[0]}")
        if not isinstance(rule.get("enabled"), bool):
            raise Invalid(f"{name}.enabled is required and must be a boolean")
        dest = rule.get("destination")
        if dest is not None:
            if not valid_forward_destination(dest):
                raise Invalid(f"{name}.destination must be null, \"voicemail\" or a number "
                              "(optional +, then 1 to 32 of 0-9 * #)")
            if dest == number:
                raise Invalid(f"{name}.destination is the user's own number {number}: "
                              "a user cannot forward to itself")
        if rule["enabled"] and dest is None:
            raise Invalid(f"{name} is enabled but has no destination")
        out[name] = {"enabled": rule["enabled"], "destination": dest}
    if "dnd" in body:
        if not isinstance(body["dnd"], bool):
            raise Invalid("dnd must be a boolean")
        out["dnd"] = body["dnd"]
    return out


def _check_ip(value):
    if not isinstance(value, str):
        raise Invalid("addresses must be a list of IP address strings")
    try:
        return ipaddress.ip_address(value.strip("[]") if value.startswith("[") else value).compressed
    except ValueError:
        raise Invalid(f"invalid IP address {value!r}") from None


def parse_sip_uri(uri):
    """(host, port or None) of `sip:host[:port]`, raising Invalid. IPv6 hosts in brackets."""
    if not isinstance(uri, str) or not uri.lower().startswith("sip:"):
        raise Invalid("uri must be sip:host:port")
    try:
        parsed = sipmsg.parse_uri(uri)
    except sipmsg.SipSyntaxError as exc:
        raise Invalid(f"uri: {exc}") from None
    if parsed.user is not None or parsed.params or parsed.headers:
        raise Invalid("uri must be sip:host:port (no user part or parameters)")
    return parsed.host, parsed.port


def validate_mds(name, body):
    if not valid_mds_name(name):
        raise Invalid("MDS name must be 1 to 64 characters among A-Z a-z 0-9 _ . -")
    _check_record(body, "MDS", MDS_FIELDS, "name", name)
    if "uri" not in body:
        raise Invalid("uri is required")
    parse_sip_uri(body["uri"])
    addresses = body.get("addresses", [])
    if addresses is None:
        addresses = []
    if not isinstance(addresses, list):
        raise Invalid("addresses must be a list of IP address strings")
    if len(addresses) > MAX_MDS_ADDRESSES:
        raise Invalid(f"at most {MAX_MDS_ADDRESSES} addresses")
    normalized = [_check_ip(a) for a in addresses]
    if len(set(normalized)) != len(normalized):
        raise Invalid("addresses lists the same address twice")
    return {"uri": body["uri"], "addresses": normalized}


# --- the service -------------------------------------------------------------------------

# What an HTTP Basic check reads of a user's hash (Provisioning.user_auth, lib/authlimit).
AUTH_FIELDS = ["profile", "ha1"]


def auth_record(reply):
    """(profile, ha1) from the user hash's AUTH_FIELDS, or None."""
    profile, stored = reply
    if profile is None or stored is None:
        return None
    return profile_of(profile), _s(stored)


class Provisioning:
    def __init__(self, r, domain):
        self.r = r
        self.domain = domain

    # users ---------------------------------------------------------------------------

    def get_user(self, number):
        """The stored profile (no secret), or None."""
        if not valid_number(number):
            return None
        return profile_of(self.r.hget(store.user_key(number), "profile"))

    def user_auth(self, number):
        """(profile, ha1) of a user, or None; for HTTP Basic checks."""
        if not valid_number(number):
            return None
        return auth_record(self.r.hmget(store.user_key(number), AUTH_FIELDS))

    def check_password(self, number, password, found=...):
        """The profile when number:password is valid, else None (constant-time compare).
        found: the user's (profile, ha1) or None when already read (user_auth)."""
        if found is ...:
            found = self.user_auth(number)
        expected = ha1(number, self.domain, password)
        if found is None:
            hmac.compare_digest(expected, expected)
            return None
        profile, stored = found
        return profile if hmac.compare_digest(expected, stored) else None

    def list_users(self):
        numbers = _sort_numbers(_s(n) for n in self.r.smembers(store.USERS_KEY))
        if not numbers:
            return []
        pipe = self.r.pipeline(transaction=False)
        for n in numbers:
            pipe.hget(store.user_key(n), "profile")
        return [profile_of(raw) for raw in pipe.execute() if raw is not None]

    def put_user(self, number, body, ha1_value=None):
        """Create or replace a user. Returns (created, profile); raises ProvisioningError."""
        try:
            return self.put_users([(number, body, ha1_value)])[0]
        except BatchError as exc:
            raise exc.errors[0][1] from None

    def put_users(self, entries):
        """All-or-nothing create/replace of several users (CSV import).

        entries: [(number, body, ha1 or None)]; an HA1 given is stored as is and wins
        over an absent password. Returns [(created, profile)] in order; raises BatchError
        listing every refused entry, with nothing written."""
        def attempt(pipe):
            pipe.watch(store.PROVISIONING_VERSION_KEY)
            writes, results = self._plan_users(entries)
            self._write(pipe, writes)
            return results
        return self._transaction(attempt)

    def _write(self, pipe, writes):
        pipe.multi()
        for command in writes:
            pipe.execute_command(*command)
        pipe.incr(store.PROVISIONING_VERSION_KEY)
        pipe.execute()

    def _transaction(self, attempt):
        """attempt(pipe) on a fresh transactional pipeline, tried again whenever a WATCHed
        key changed before its EXEC (redis.WatchError); Busy after WATCH_RETRIES tries.

        Leaving the pipeline resets it (UNWATCH, queued commands dropped), so an attempt
        refuses a request by simply raising: nothing is written."""
        for _ in range(WATCH_RETRIES):
            with self.r.pipeline(transaction=True) as pipe:
                try:
                    return attempt(pipe)
                except redis.WatchError:
                    continue
        raise Busy("too many concurrent changes, retry")

    @staticmethod
    def _watched_profile(pipe, number):
        """WATCH the hash of user `number` and return its profile; NotFound if absent."""
        key = store.user_key(number)
        pipe.watch(key)
        profile = profile_of(pipe.hget(key, "profile"))
        if profile is None:
            raise NotFound(f"no user {number}")
        return profile

    def _read(self, fn):
        """Run reads in one round trip on a separate, non-transactional pipeline (reads
        don't disturb the WATCH held by the transaction's connection)."""
        pipe = self.r.pipeline(transaction=False)
        fn(pipe)
        return pipe.execute()

    def _plan_users(self, entries):
        """(writes, results) of put_users: the commands to send and what to answer;
        raises BatchError. Its reads go on another connection than the transaction's."""
        numbers = [e[0] for e in entries if valid_number(e[0])]
        old_raw = self._read(lambda p: [p.hget(store.user_key(n), "profile") for n in numbers])
        olds = dict(zip(numbers, map(profile_of, old_raw)))

        errors = []
        plans = []          # (index, number, old profile or None, new profile, password, ha1)
        seen = set()
        for index, (number, body, given_ha1) in enumerate(entries):
            try:
                if number in seen:
                    raise Invalid(f"user {number} appears twice")
                seen.add(number)
                old = olds.get(number)
                profile, password = validate_user(number, body, new=old is None,
                                                  have_ha1=given_ha1 is not None)
                if given_ha1 is not None and not HA1_RE.fullmatch(given_ha1):
                    raise Invalid("ha1 must be 32 hexadecimal digits")
                plans.append((index, number, old, profile, password, given_ha1))
            except ProvisioningError as exc:
                errors.append((index, exc))
        if errors:
            raise BatchError(errors)

        # Checks against the stored state: MDS exist, DIDs free, numbers vs DIDs.
        batch = {p[1]: p for p in plans}
        mds_names = sorted({p[3]["mds"] for p in plans if p[3]["mds"] is not None})
        all_dids = sorted({d for p in plans for d in p[3]["dids"]})
        old_dids = {d for p in plans if p[2] for d in p[2]["dids"]}
        new_numbers = {p[1] for p in plans if p[2] is None}
        did_numbers = [d for d in all_dids if valid_number(d)]
        probe = sorted(set(all_dids) | old_dids | new_numbers)
        known_mds, did_owner, user_numbers = set(), {}, set()
        if mds_names:
            found = self.r.hmget(store.MDS_KEY, mds_names)
            known_mds = {n for n, v in zip(mds_names, found) if v is not None}
        if probe:
            owners = self.r.mget([store.did_key(d) for d in probe])
            did_owner = {d: _s(o) for d, o in zip(probe, owners) if o is not None}
        if did_numbers:     # a DID that looks like a number must not be a user's number
            member = self.r.smismember(store.USERS_KEY, did_numbers)
            user_numbers = {d for d, m in zip(did_numbers, member) if m}

        claimed = {}        # did -> number, across the batch
        for index, number, old, profile, password, given_ha1 in plans:
            try:
                if profile["mds"] is not None and profile["mds"] not in known_mds:
                    raise Invalid(f"unknown MDS {profile['mds']!r}")
                if old is None:
                    owner = did_owner.get(number)
                    if owner is not None and owner != number:
                        raise Conflict(f"number {number} is already a DID of user {owner}")
                for did in profile["dids"]:
                    owner = did_owner.get(did)
                    if owner is not None and owner != number:
                        # Allowed only when the same batch takes it away from its owner.
                        if owner not in batch or did in batch[owner][3]["dids"]:
                            raise Conflict(f"DID {did} already belongs to user {owner}")
                    if did in claimed:
                        raise Conflict(f"DID {did} is also given to user {claimed[did]}")
                    claimed[did] = number
                    if did != number and (did in user_numbers or did in batch):
                        raise Conflict(f"DID {did} is the number of another user")
            except ProvisioningError as exc:
                errors.append((index, exc))
        if errors:
            raise BatchError(errors)

        writes, results = [], []
        for index, number, old, profile, password, given_ha1 in plans:
            key = store.user_key(number)
            fields = ["profile", pack_profile(profile)]
            if password is not None:
                fields += ["ha1", ha1(number, self.domain, password)]
            elif given_ha1 is not None:
                fields += ["ha1", given_ha1.lower()]
            writes.append(["HSET", key, *fields])
            for did in set(old["dids"] if old else ()) - set(profile["dids"]):
                if did not in claimed and did_owner.get(did) == number:
                    writes.append(["DEL", store.did_key(did)])
            for did in profile["dids"]:
                writes.append(["SET", store.did_key(did), number])
            results.append((old is None, profile))
        numbers = [p[1] for p in plans]
        writes += [["SADD", store.USERS_KEY, *numbers[i:i + 4000]]
                   for i in range(0, len(numbers), 4000)]
        return writes, results

    def delete_user(self, number):
        """Remove a user and every key of it. Raises NotFound."""
        if not valid_number(number):
            raise NotFound(f"no user {number}")

        def attempt(pipe):
            old = self._watched_profile(pipe, number)
            dids = old["dids"]
            if dids:
                pipe.watch(*[store.did_key(d) for d in dids])
                owners = [_s(v) for v in pipe.mget([store.did_key(d) for d in dids])]
            else:
                owners = []
            pipe.multi()
            pipe.delete(store.user_key(number), *[fn(number) for fn in USER_EXTRA_KEYS])
            for did, owner in zip(dids, owners):
                if owner == number:
                    pipe.delete(store.did_key(did))
            pipe.srem(store.USERS_KEY, number)
            pipe.incr(store.PROVISIONING_VERSION_KEY)   # a batch in flight reads again
            pipe.execute()
            return old

        return self._transaction(attempt)

    def get_device(self, number):
        """(profile, selected device) of a user, or None. Never set means webrtc."""
        if not valid_number(number):
            return None
        profile, device = self.r.hmget(store.user_key(number), ["profile", "device"])
        if profile is None:
            return None
        device = _s(device)
        return profile_of(profile), device if device in DEVICES else "webrtc"

    def set_device(self, number, device):
        """Store the device selection of a `ua` user. Raises Invalid, NotFound, Conflict."""
        if device not in DEVICES:
            raise Invalid("device must be webrtc or deskphone")
        if not valid_number(number):
            raise NotFound(f"no user {number}")

        def attempt(pipe):
            profile = self._watched_profile(pipe, number)
            if profile["line_type"] != "ua":
                raise Conflict(f"user {number} has line type {profile['line_type']}: "
                               "device selection needs line type ua")
            pipe.multi()
            pipe.hset(store.user_key(number), "device", device)
            pipe.execute()
            return profile

        return self._transaction(attempt)

    def get_forwards(self, number):
        """The user's forwarding rules, normalized (defaults when never set). NotFound."""
        if not valid_number(number):
            raise NotFound(f"no user {number}")
        profile, raw = self.r.hmget(store.user_key(number), ["profile", "forwards"])
        if profile is None:
            raise NotFound(f"no user {number}")
        return normalize_forwards(raw)

    def set_forwards(self, number, body):
        """Replace the user's forwarding rules with `body` (any line type). Returns the
        stored rules; raises Invalid (nothing stored) or NotFound."""
        if not valid_number(number):
            raise NotFound(f"no user {number}")
        forwards = validate_forwards(number, body)

        def attempt(pipe):
            profile = self._watched_profile(pipe, number)
            # A forward to one of the user's own DIDs comes straight back: refused too.
            dids = set(profile.get("dids") or ())
            for name in FORWARD_RULES:
                dest = forwards[name]["destination"]
                if dest in dids:
                    raise Invalid(f"{name}.destination {dest} is a DID of the user itself: "
                                  "a user cannot forward to itself")
            pipe.multi()
            pipe.hset(store.user_key(number), "forwards", store.pack(forwards))
            pipe.execute()
            return forwards

        return self._transaction(attempt)

    # MDS -----------------------------------------------------------------------------

    def get_mds(self, name):
        if not valid_mds_name(name):
            return None
        record = store.unpack(self.r.hget(store.MDS_KEY, name))
        return None if record is None else {"name": name, **record}

    def list_mds(self):
        items = self.r.hgetall(store.MDS_KEY)
        out = [{"name": _s(k), **store.unpack(v)} for k, v in items.items()]
        return sorted(out, key=lambda m: m["name"])

    def put_mds(self, name, body):
        """Create or replace an MDS. Returns (created, record); raises ProvisioningError."""
        record = validate_mds(name, body)

        def attempt(pipe):
            pipe.watch(store.MDS_KEY, store.MDS_ADDR_KEY)
            old = store.unpack(pipe.hget(store.MDS_KEY, name))
            if record["addresses"]:
                owners = pipe.hmget(store.MDS_ADDR_KEY, record["addresses"])
                for addr, owner in zip(record["addresses"], owners):
                    owner = _s(owner)
                    if owner is not None and owner != name:
                        raise Invalid(f"address {addr} already belongs to MDS {owner}")
            pipe.multi()
            pipe.hset(store.MDS_KEY, name, store.pack(record))
            stale = set(old["addresses"]) - set(record["addresses"]) if old else set()
            if stale:
                pipe.hdel(store.MDS_ADDR_KEY, *sorted(stale))
            if record["addresses"]:
                pipe.hset(store.MDS_ADDR_KEY, mapping={a: name for a in record["addresses"]})
            pipe.incr(store.PROVISIONING_VERSION_KEY)   # a batch in flight reads again
            pipe.execute()
            return old is None, {"name": name, **record}

        return self._transaction(attempt)

    def delete_mds(self, name):
        """Remove an MDS. NotFound if absent; Conflict while a user still uses it."""
        if not valid_mds_name(name):
            raise NotFound(f"no MDS {name}")

        def attempt(pipe):
            pipe.watch(store.MDS_KEY, store.MDS_ADDR_KEY, store.USERS_KEY)
            old = store.unpack(pipe.hget(store.MDS_KEY, name))
            if old is None:
                raise NotFound(f"no MDS {name}")
            numbers = _sort_numbers(_s(n) for n in pipe.smembers(store.USERS_KEY))
            users = []
            if numbers:
                # Watch every user: one assigned to this MDS meanwhile aborts us.
                keys = [store.user_key(n) for n in numbers]
                for i in range(0, len(keys), 1000):
                    pipe.watch(*keys[i:i + 1000])
                raw = self._read(lambda p: [p.hget(k, "profile") for k in keys])
                for n, profile in zip(numbers, map(profile_of, raw)):
                    if profile is not None and profile["mds"] == name:
                        users.append(n)
            if users:
                shown = ", ".join(users[:10]) + (" ..." if len(users) > 10 else "")
                raise Conflict(f"MDS {name} is still used by {len(users)} user(s): {shown}")
            pipe.multi()
            pipe.hdel(store.MDS_KEY, name)
            if old["addresses"]:
                pipe.hdel(store.MDS_ADDR_KEY, *old["addresses"])
            pipe.incr(store.PROVISIONING_VERSION_KEY)   # a batch in flight reads again
            pipe.execute()
            return {"name": name, **old}

        return self._transaction(attempt)

