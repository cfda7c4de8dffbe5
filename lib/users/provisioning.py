"""Provisioning of users and MDS nodes (contract section 9): the atomic writes.

Pure Python over a redis client; no Kamailio import. Every write that touches several
keys runs in one MULTI/EXEC under WATCH of what its validation read, so a refused
request changes nothing and two concurrent writers cannot both claim one DID or one MDS
address. A batch of users (put_users: a CSV import of 100,000) watches one key that every
provisioning change bumps (store.PROVISIONING_VERSION_KEY) rather than each key it read. Redis connection errors propagate (redis.ConnectionError / TimeoutError /
OSError): the caller answers 503.

Errors a caller can show to the client are ProvisioningError subclasses carrying an
HTTP status (400 Invalid, 404 NotFound, 409 Conflict).

"""
import hmac

import redis

from lib.store import codec, keyspace
from lib.users import forward_rules, profiles, validation

WATCH_RETRIES = 20

# Per-user keys removed with the user, besides its user hash and DID keys. Modules that add
# per-user state (forwards, history...) append their key function here.
USER_EXTRA_KEYS = [keyspace.contacts_key, keyspace.calls_key, keyspace.history_key]


class Busy(Exception):
    """Too many concurrent writers on the same keys; the caller should answer 503."""


class Provisioning:
    def __init__(self, r, domain):
        self.r = r
        self.domain = domain

    # users ---------------------------------------------------------------------------

    def get_user(self, number):
        """The stored profile (no secret), or None."""
        if not validation.valid_number(number):
            return None
        return profiles.profile_of(self.r.hget(keyspace.user_key(number), "profile"))

    def user_auth(self, number):
        """(profile, ha1) of a user, or None; for HTTP Basic checks."""
        if not validation.valid_number(number):
            return None
        return profiles.auth_record(self.r.hmget(keyspace.user_key(number), profiles.AUTH_FIELDS))

    def check_password(self, number, password, found=...):
        """The profile when number:password is valid, else None (constant-time compare).
        found: the user's (profile, ha1) or None when already read (user_auth)."""
        if found is ...:
            found = self.user_auth(number)
        expected = profiles.ha1(number, self.domain, password)
        if found is None:
            hmac.compare_digest(expected, expected)
            return None
        profile, stored = found
        return profile if hmac.compare_digest(expected, stored) else None

    def list_users(self):
        numbers = profiles.sort_numbers(codec.text(n) for n in self.r.smembers(keyspace.USERS_KEY))
        if not numbers:
            return []
        pipe = self.r.pipeline(transaction=False)
        for n in numbers:
            pipe.hget(keyspace.user_key(n), "profile")
        return [profiles.profile_of(raw) for raw in pipe.execute() if raw is not None]

    def put_user(self, number, body, ha1_value=None):
        """Create or replace a user. Returns (created, profile); raises ProvisioningError."""
        try:
            return self.put_users([(number, body, ha1_value)])[0]
        except validation.BatchError as exc:
            raise exc.errors[0][1] from None

    def put_users(self, entries):
        """All-or-nothing create/replace of several users (CSV import).

        entries: [(number, body, ha1 or None)]; an HA1 given is stored as is and wins
        over an absent password. Returns [(created, profile)] in order; raises BatchError
        listing every refused entry, with nothing written."""
        def attempt(pipe):
            pipe.watch(keyspace.PROVISIONING_VERSION_KEY)
            writes, results = self._plan_users(entries)
            self._write(pipe, writes)
            return results
        return self._transaction(attempt)

    def _write(self, pipe, writes):
        pipe.multi()
        for command in writes:
            pipe.execute_command(*command)
        pipe.incr(keyspace.PROVISIONING_VERSION_KEY)
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
        key = keyspace.user_key(number)
        pipe.watch(key)
        profile = profiles.profile_of(pipe.hget(key, "profile"))
        if profile is None:
            raise validation.NotFound(f"no user {number}")
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
        numbers = [e[0] for e in entries if validation.valid_number(e[0])]
        old_raw = self._read(lambda p: [p.hget(keyspace.user_key(n), "profile") for n in numbers])
        olds = dict(zip(numbers, map(profiles.profile_of, old_raw)))

        errors = []
        plans = []          # (index, number, old profile or None, new profile, password, ha1)
        seen = set()
        for index, (number, body, given_ha1) in enumerate(entries):
            try:
                if number in seen:
                    raise validation.Invalid(f"user {number} appears twice")
                seen.add(number)
                old = olds.get(number)
                profile, password = validation.validate_user(number, body, new=old is None,
                                                  have_ha1=given_ha1 is not None)
                if given_ha1 is not None and not validation.HA1_RE.fullmatch(given_ha1):
                    raise validation.Invalid("ha1 must be 32 hexadecimal digits")
                plans.append((index, number, old, profile, password, given_ha1))
            except validation.ProvisioningError as exc:
                errors.append((index, exc))
        if errors:
            raise validation.BatchError(errors)

        # Checks against the stored state: MDS exist, DIDs free, numbers vs DIDs.
        batch = {p[1]: p for p in plans}
        mds_names = sorted({p[3]["mds"] for p in plans if p[3]["mds"] is not None})
        all_dids = sorted({d for p in plans for d in p[3]["dids"]})
        old_dids = {d for p in plans if p[2] for d in p[2]["dids"]}
        new_numbers = {p[1] for p in plans if p[2] is None}
        did_numbers = [d for d in all_dids if validation.valid_number(d)]
        probe = sorted(set(all_dids) | old_dids | new_numbers)
        known_mds, did_owner, user_numbers = set(), {}, set()
        if mds_names:
            found = self.r.hmget(keyspace.MDS_KEY, mds_names)
            known_mds = {n for n, v in zip(mds_names, found) if v is not None}
        if probe:
            owners = self.r.mget([keyspace.did_key(d) for d in probe])
            did_owner = {d: codec.text(o) for d, o in zip(probe, owners) if o is not None}
        if did_numbers:     # a DID that looks like a number must not be a user's number
            member = self.r.smismember(keyspace.USERS_KEY, did_numbers)
            user_numbers = {d for d, m in zip(did_numbers, member) if m}

        claimed = {}        # did -> number, across the batch
        for index, number, old, profile, password, given_ha1 in plans:
            try:
                if profile["mds"] is not None and profile["mds"] not in known_mds:
                    raise validation.Invalid(f"unknown MDS {profile['mds']!r}")
                if old is None:
                    owner = did_owner.get(number)
                    if owner is not None and owner != number:
                        raise validation.Conflict(f"number {number} is already a DID of user {owner}")
                for did in profile["dids"]:
                    owner = did_owner.get(did)
                    if owner is not None and owner != number:
                        # Allowed only when the same batch takes it away from its owner.
                        if owner not in batch or did in batch[owner][3]["dids"]:
                            raise validation.Conflict(f"DID {did} already belongs to user {owner}")
                    if did in claimed:
                        raise validation.Conflict(f"DID {did} is also given to user {claimed[did]}")
                    claimed[did] = number
                    if did != number and (did in user_numbers or did in batch):
                        raise validation.Conflict(f"DID {did} is the number of another user")
            except validation.ProvisioningError as exc:
                errors.append((index, exc))
        if errors:
            raise validation.BatchError(errors)

        writes, results = [], []
        for index, number, old, profile, password, given_ha1 in plans:
            key = keyspace.user_key(number)
            fields = ["profile", profiles.pack_profile(profile)]
            if password is not None:
                fields += ["ha1", profiles.ha1(number, self.domain, password)]
            elif given_ha1 is not None:
                fields += ["ha1", given_ha1.lower()]
            writes.append(["HSET", key, *fields])
            for did in set(old["dids"] if old else ()) - set(profile["dids"]):
                if did not in claimed and did_owner.get(did) == number:
                    writes.append(["DEL", keyspace.did_key(did)])
            for did in profile["dids"]:
                writes.append(["SET", keyspace.did_key(did), number])
            results.append((old is None, profile))
        numbers = [p[1] for p in plans]
        writes += [["SADD", keyspace.USERS_KEY, *numbers[i:i + 4000]]
                   for i in range(0, len(numbers), 4000)]
        return writes, results

    def delete_user(self, number):
        """Remove a user and every key of it. Raises NotFound."""
        if not validation.valid_number(number):
            raise validation.NotFound(f"no user {number}")

        def attempt(pipe):
            old = self._watched_profile(pipe, number)
            dids = old["dids"]
            if dids:
                pipe.watch(*[keyspace.did_key(d) for d in dids])
                owners = [codec.text(v) for v in pipe.mget([keyspace.did_key(d) for d in dids])]
            else:
                owners = []
            pipe.multi()
            pipe.delete(keyspace.user_key(number), *[fn(number) for fn in USER_EXTRA_KEYS])
            for did, owner in zip(dids, owners):
                if owner == number:
                    pipe.delete(keyspace.did_key(did))
            pipe.srem(keyspace.USERS_KEY, number)
            pipe.incr(keyspace.PROVISIONING_VERSION_KEY)   # a batch in flight reads again
            pipe.execute()
            return old

        return self._transaction(attempt)

    def get_device(self, number):
        """(profile, selected device) of a user, or None. Never set means webrtc."""
        if not validation.valid_number(number):
            return None
        profile, device = self.r.hmget(keyspace.user_key(number), ["profile", "device"])
        if profile is None:
            return None
        device = codec.text(device)
        return profiles.profile_of(profile), device if device in profiles.DEVICES else "webrtc"

    def set_device(self, number, device):
        """Store the device selection of a `ua` user. Raises Invalid, NotFound, Conflict."""
        if device not in profiles.DEVICES:
            raise validation.Invalid("device must be webrtc or deskphone")
        if not validation.valid_number(number):
            raise validation.NotFound(f"no user {number}")

        def attempt(pipe):
            profile = self._watched_profile(pipe, number)
            if profile["line_type"] != "ua":
                raise validation.Conflict(f"user {number} has line type {profile['line_type']}: "
                               "device selection needs line type ua")
            pipe.multi()
            pipe.hset(keyspace.user_key(number), "device", device)
            pipe.execute()
            return profile

        return self._transaction(attempt)

    def get_forwards(self, number):
        """The user's forwarding rules, normalized (defaults when never set). NotFound."""
        if not validation.valid_number(number):
            raise validation.NotFound(f"no user {number}")
        profile, raw = self.r.hmget(keyspace.user_key(number), ["profile", "forwards"])
        if profile is None:
            raise validation.NotFound(f"no user {number}")
        return forward_rules.normalize_forwards(raw)

    def set_forwards(self, number, body):
        """Replace the user's forwarding rules with `body` (any line type). Returns the
        stored rules; raises Invalid (nothing stored) or NotFound."""
        if not validation.valid_number(number):
            raise validation.NotFound(f"no user {number}")
        forwards = forward_rules.validate_forwards(number, body)

        def attempt(pipe):
            profile = self._watched_profile(pipe, number)
            # A forward to one of the user's own DIDs comes straight back: refused too.
            dids = set(profile.get("dids") or ())
            for name in forward_rules.FORWARD_RULES:
                dest = forwards[name]["destination"]
                if dest in dids:
                    raise validation.Invalid(f"{name}.destination {dest} is a DID of the user itself: "
                                  "a user cannot forward to itself")
            pipe.multi()
            pipe.hset(keyspace.user_key(number), "forwards", codec.pack(forwards))
            pipe.execute()
            return forwards

        return self._transaction(attempt)

    # MDS -----------------------------------------------------------------------------

    def get_mds(self, name):
        if not validation.valid_mds_name(name):
            return None
        record = codec.unpack(self.r.hget(keyspace.MDS_KEY, name))
        return None if record is None else {"name": name, **record}

    def list_mds(self):
        items = self.r.hgetall(keyspace.MDS_KEY)
        out = [{"name": codec.text(k), **codec.unpack(v)} for k, v in items.items()]
        return sorted(out, key=lambda m: m["name"])

    def put_mds(self, name, body):
        """Create or replace an MDS. Returns (created, record); raises ProvisioningError."""
        record = validation.validate_mds(name, body)

        def attempt(pipe):
            pipe.watch(keyspace.MDS_KEY, keyspace.MDS_ADDR_KEY)
            old = codec.unpack(pipe.hget(keyspace.MDS_KEY, name))
            if record["addresses"]:
                owners = pipe.hmget(keyspace.MDS_ADDR_KEY, record["addresses"])
                for addr, owner in zip(record["addresses"], owners):
                    owner = codec.text(owner)
                    if owner is not None and owner != name:
                        raise validation.Invalid(f"address {addr} already belongs to MDS {owner}")
            pipe.multi()
            pipe.hset(keyspace.MDS_KEY, name, codec.pack(record))
            stale = set(old["addresses"]) - set(record["addresses"]) if old else set()
            if stale:
                pipe.hdel(keyspace.MDS_ADDR_KEY, *sorted(stale))
            if record["addresses"]:
                pipe.hset(keyspace.MDS_ADDR_KEY, mapping={a: name for a in record["addresses"]})
            pipe.incr(keyspace.PROVISIONING_VERSION_KEY)   # a batch in flight reads again
            pipe.execute()
            return old is None, {"name": name, **record}

        return self._transaction(attempt)

    def delete_mds(self, name):
        """Remove an MDS. NotFound if absent; Conflict while a user still uses it."""
        if not validation.valid_mds_name(name):
            raise validation.NotFound(f"no MDS {name}")

        def attempt(pipe):
            pipe.watch(keyspace.MDS_KEY, keyspace.MDS_ADDR_KEY, keyspace.USERS_KEY)
            old = codec.unpack(pipe.hget(keyspace.MDS_KEY, name))
            if old is None:
                raise validation.NotFound(f"no MDS {name}")
            numbers = profiles.sort_numbers(codec.text(n) for n in pipe.smembers(keyspace.USERS_KEY))
            users = []
            if numbers:
                # Watch every user: one assigned to this MDS meanwhile aborts us.
                keys = [keyspace.user_key(n) for n in numbers]
                for i in range(0, len(keys), 1000):
                    pipe.watch(*keys[i:i + 1000])
                raw = self._read(lambda p: [p.hget(k, "profile") for k in keys])
                for n, profile in zip(numbers, map(profiles.profile_of, raw)):
                    if profile is not None and profile["mds"] == name:
                        users.append(n)
            if users:
                shown = ", ".join(users[:10]) + (" ..." if len(users) > 10 else "")
                raise validation.Conflict(f"MDS {name} is still used by {len(users)} user(s): {shown}")
            pipe.multi()
            pipe.hdel(keyspace.MDS_KEY, name)
            if old["addresses"]:
                pipe.hdel(keyspace.MDS_ADDR_KEY, *old["addresses"])
            pipe.incr(keyspace.PROVISIONING_VERSION_KEY)   # a batch in flight reads again
            pipe.execute()
            return {"name": name, **old}

        return self._transaction(attempt)

