"""MDS health (contract section 9): every proxy probes every MDS with SIP OPTIONS over UDP
and keeps what it saw in Redis, where the call context script (lib/features/calls), the API and
/metrics read it: a call placed by a user whose MDS is down gets 503 at once, at no extra
Redis round trip.

Probes go out from one rtimer process of their own (kamailio.cfg, `ksr_mds_timer`), so a
round may block it up to PROBE_TIMEOUT without delaying any SIP worker; one round probes
every MDS at once, one UDP socket each. tm cannot be used: it hands no reply of a
`t_uac_send` request to KEMI. A round reads the MDS list from Redis, so an MDS added,
changed or removed through any proxy's API is probed (or forgotten) from the next round.

Health is per proxy (`ua:mds:health:<node>`, a hash <name> -> msgpack {"uri", "up",
"since"}): each proxy routes by what it can reach itself. A record names the URI it was
measured on; one whose URI no longer matches the MDS's counts as never probed."""
import datetime
import math
import os
import select
import socket
import time
from dataclasses import dataclass

from lib.store import clients, codec, keyspace
from lib.users.validation import parse_sip_uri

PROBE_TIMEOUT = 2.0      # contract: a probe unanswered within 2 s is missed


@dataclass
class Health:
    uri: str
    up: bool | None = None      # None: not known yet (never answered, too few misses)
    since: float | None = None  # when `up` last changed
    misses: int = 0             # probes missed in a row


def update(prev, uri, answered, now, threshold):
    """The health after one probe: up after one answer, down after `threshold` misses in
    a row. A new URI starts from scratch."""
    if prev is None or prev.uri != uri:
        prev = Health(uri)
    if answered:
        return Health(uri, True, prev.since if prev.up is True else now, 0)
    misses = prev.misses + 1
    if misses >= threshold and prev.up is not False:
        return Health(uri, False, now, misses)
    return Health(uri, prev.up, prev.since, misses)


def status(mds, record):
    """(up, since) of an MDS record (`uri`) given its stored health record, if any."""
    if record is None or record["uri"] != mds["uri"]:
        return None, None
    return record["up"], record["since"]


def iso(ts):
    if ts is None:
        return None
    return (datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)
            .isoformat(timespec="seconds").replace("+00:00", "Z"))


def load(r, node):
    """{name: health record} as this proxy last saw them."""
    return {k.decode(): codec.unpack(v) for k, v in r.hgetall(keyspace.mds_health_key(node)).items()}


def views(r, node, mds_records):
    """The MDS records as the API shows them, with this proxy's probing result."""
    health = load(r, node)
    out = []
    for record in mds_records:
        up, since = status(record, health.get(record["name"]))
        out.append({**record, "up": up, "since": iso(since)})
    return out


def records(states):
    """What is stored of the health: MDS never judged are left out (null)."""
    return {name: codec.pack({"uri": h.uri, "up": h.up, "since": h.since})
            for name, h in states.items() if h.up is not None}


def save(r, node, states):
    """Replace this proxy's health records."""
    known = records(states)
    pipe = r.pipeline(transaction=True)
    pipe.delete(keyspace.mds_health_key(node))
    if known:
        pipe.hset(keyspace.mds_health_key(node), mapping=known)
    pipe.execute()


# --- one probe round ---------------------------------------------------------------------

def options_request(uri, local, domain, call_id, tag, branch):
    host, port = local[:2]
    via_host = f"[{host}]" if ":" in host else host
    return (f"OPTIONS {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {via_host}:{port};branch=z9hG4bK{branch};rport\r\n"
            f"Max-Forwards: 70\r\n"
            f"From: <sip:ua-proxy@{domain}>;tag={tag}\r\n"
            f"To: <{uri}>\r\n"
            f"Call-ID: {call_id}\r\n"
            f"CSeq: 1 OPTIONS\r\n"
            f"User-Agent: ua-proxy\r\n"
            f"Content-Length: 0\r\n\r\n").encode()


def final_status(data, call_id):
    """The status code of a final response to our probe, else None (1xx, not ours)."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace").split("\r\n")
    parts = head[0].split(" ", 2)
    if len(parts) < 2 or parts[0] != "SIP/2.0" or not parts[1].isdigit():
        return None
    ours = any(name.strip().lower() in ("call-id", "i") and value.strip() == call_id
               for name, _, value in (line.partition(":") for line in head[1:]))
    code = int(parts[1])
    return code if ours and code >= 200 else None


def _open(uri, listen):
    """A UDP socket connected to the MDS (so an ICMP port unreachable is seen at once)."""
    host, port = parse_sip_uri(uri)
    family, _, _, _, addr = socket.getaddrinfo(host, port or 5060, type=socket.SOCK_DGRAM)[0]
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        if listen not in ("", "0.0.0.0", "::") and (":" in listen) == (family == socket.AF_INET6):
            sock.bind((listen, 0))     # probes come from the proxy's own address
        sock.connect(addr)
    except OSError:
        sock.close()
        raise
    return sock


def probe(targets, listen, domain, timeout=PROBE_TIMEOUT):
    """{name: answered} for targets {name: uri}: one OPTIONS each, all at once. Answered
    means a final response below 500 within `timeout` (a 4xx still shows a live SIP
    stack; a 5xx is an MDS refusing service); no answer, a refused port or an
    unresolvable host is a miss."""
    answered = {name: False for name in targets}
    pending = {}
    for name, uri in targets.items():
        call_id = os.urandom(10).hex()
        try:
            sock = _open(uri, listen)
        except OSError:
            continue
        try:
            sock.send(options_request(uri, sock.getsockname(), domain, call_id,
                                      os.urandom(4).hex(), os.urandom(8).hex()))
        except OSError:
            sock.close()
            continue
        pending[sock] = (name, call_id)
    deadline = time.monotonic() + timeout
    try:
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            readable, _, _ = select.select(list(pending), [], [], left)
            for sock in readable:
                name, call_id = pending[sock]
                try:
                    code = final_status(sock.recv(65535), call_id)
                except OSError:     # ICMP port unreachable: a miss, known at once
                    code = 0
                if code is not None:
                    answered[name] = 200 <= code < 500
                    del pending[sock]
                    sock.close()
    finally:
        for sock in pending:
            sock.close()
    return answered


class Prober:
    """The rtimer process's state: health of every MDS, a round every `interval` seconds
    (0: probing off, no MDS is ever down)."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.states = {}
        self.next_round = 0.0

    def tick(self, now):
        """Run a round when one is due: {name: up} of the MDS whose health is known; {}
        when no round ran."""
        if now < self.next_round:
            return {}
        interval = self.cfg.mds_probe_interval
        self.next_round = now + interval if interval > 0 else math.inf
        mds = {k.decode(): codec.unpack(v)["uri"]
               for k, v in clients.call(lambda r: r.hgetall(keyspace.MDS_KEY)).items()}
        answered = probe(mds, self.cfg.listen, self.cfg.domain) if interval > 0 else {}
        self.states = {name: update(self.states.get(name), mds[name], ok, now,
                                    self.cfg.mds_probe_threshold)
                       for name, ok in answered.items()}
        # Written only when Redis holds something else (a change, or a failover lost it):
        # a write invalidates every call context that read it (lib/store/wire.cached_script).
        node = self.cfg.node_id
        held = {k.decode(): v for k, v in clients.call(lambda r: r.hgetall(keyspace.mds_health_key(node))).items()}
        if held != records(self.states):
            clients.call(lambda r: save(r, node, self.states))
        return {name: h.up for name, h in self.states.items() if h.up is not None}
