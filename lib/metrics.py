"""Prometheus metrics (contract section 10), with the official client (prometheus-client).

Counters and the routing-time histogram are written by every process that counts (each
Kamailio worker, the API server) in the client's multiprocess mode: one mmap'd file per
process under PROMETHEUS_MULTIPROC_DIR, which lib/tools/runner sets (this node's var/run/) and
clears before anything starts; a scrape adds them up. An increment is a write into that
file, no system call but getpid.

The rest is read when /metrics is scraped (`exposition`, called by the API server):
gauges counted in Redis, from small indexes that the registrar and the call state keep in
the same writes,

  ua:reg:<class>     zset "N|<12 hex digits of the binding field's SHA-1>" scored by expiry:
                     live registrations per class (hashed: a field holds a whole contact URI,
                     and this index has one entry per registration)
  ua:active:<class>  zset "N|Call-ID" scored by expiry: calls in progress per device

the MDS health this proxy's probes stored (lib/features/mds_health), and Kamailio's own statistics
through its RPC interface (kamcmd on the ctl module's socket).
"""
import bisect
import hashlib
import math
import os
import tempfile
import threading
import time

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.utils import floatToGoString

from lib import config
from lib.decisions.routing import DEVICE_CLASSES
from lib.features import kamailio_rpc, mds_health
from lib.store import clients, codec, keyspace

# Family -> (help, label names, the label values it is exported with from the start)
COUNTERS = {
    "ua_calls_routed_total": (
        "Incoming calls that rang a device, by device and the reason it was chosen",
        ("device", "reason"), [(d, r) for d in DEVICE_CLASSES
                               for r in ("selected", "logged_out", "selected_unavailable")]),
    "ua_fallbacks_total": (
        "Calls that rang the deskphone although webrtc was selected",
        ("reason",), [("logged_out",), ("webrtc_unreachable",)]),
    "ua_forwards_total": (
        "Calls retargeted by a forwarding rule",
        ("rule",), [(r,) for r in ("unconditional", "busy", "noanswer", "unavailable", "dnd")]),
    "ua_store_errors_total": ("Requests that found the state store unreachable", (), [()]),
    "ua_auth_failures_total": (
        "Failed authentications: sip (digest), replay (credentials used before), api",
        ("kind",), [("sip",), ("api",), ("replay",)]),
    "ua_flood_blocked_total": ("Requests dropped by flood protection", (), [()]),
    "ua_api_blocked_total": ("API requests refused unchecked (429): their address failed "
                             "to authenticate too often", (), [()]),
    "ua_control_actions_total": (
        "Deskphone control actions asked by the UC Assistant (click-to-dial, hang-up, "
        "answer), by outcome: accepted, refused (4xx), failed (Kamailio unreachable)",
        ("action", "outcome"), [(a, o) for a in ("dial", "hangup", "answer")
                                for o in ("accepted", "refused", "failed")]),
    "ua_overload_rejected_total": (
        "New out-of-dialog requests refused with 503 while the node was overloaded",
        ("method",), [("INVITE",), ("REGISTER",)]),
}
GAUGES = {"ua_registrations": keyspace.REGISTRATIONS_PREFIX,
          "ua_calls_in_progress": keyspace.ACTIVE_CALLS_PREFIX}
GAUGE_HELP = {"ua_registrations": "Live registrations by device class",
              "ua_calls_in_progress": "Calls in progress by device"}
ROUTING_HISTOGRAM = "ua_routing_duration_seconds"
ROUTING_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
MDS_UP = "ua_mds_up"
RPC_TIMEOUT = 1.0       # seconds for each Kamailio RPC at scrape time
# Debian's kamailio package puts it in /usr/sbin, which a user's PATH may lack.
# kamailio_* gauge -> (help, RPC command, the figure in its answer)
KAMAILIO_GAUGES = {
    "kamailio_shmem_used_bytes": ("Shared memory in use (fragments included)",
                                  "stats", "shmem:real_used_size"),
    "kamailio_shmem_free_bytes": ("Shared memory free", "stats", "shmem:free_size"),
    "kamailio_tm_active_transactions": ("Transactions in progress",
                                        "stats", "tmx:active_transactions"),
    "kamailio_websocket_connections": ("Open WebSocket connections (WS and WSS)",
                                       "stats", "websocket:ws_current_connections"),
    "kamailio_tcp_connections": ("Open TCP connections (TLS and WebSocket included)",
                                 "tcp", "opened_connections"),
    "kamailio_tls_connections": ("Open TLS connections (WSS included)",
                                 "tcp", "opened_tls_connections"),
}
RPC_COMMANDS = {"stats": ["stats.get_statistics", "shmem:", "tmx:", "websocket:"],
                "tcp": ["core.tcp_info"]}

# The keys of the series in the client's multiprocess files, as its Counter and Histogram
# write them; counts are written there directly (count, observe_routing): through the
# client's metric objects, the counting cost 8 to 10 % of U's CPU per call in make bench,
# for a few increments a call (a dozen Python calls each, run with cold caches).
_COUNTER_KEYS = {(name, values): mmap_key(name.removesuffix("_total"), name, labels, values,
                                          doc)
                 for name, (doc, labels, series) in COUNTERS.items() for values in series}
_ROUTING_HELP = "Time to decide an initial request"
_BOUNDS = (*ROUTING_BUCKETS, math.inf)
_SUM_KEY = mmap_key(ROUTING_HISTOGRAM, f"{ROUTING_HISTOGRAM}_sum", (), (), _ROUTING_HELP)
_BUCKET_KEYS = [mmap_key(ROUTING_HISTOGRAM, f"{ROUTING_HISTOGRAM}_bucket", ("le",),
                         (floatToGoString(bound),), _ROUTING_HELP) for bound in _BOUNDS]


class _Files:
    """This process's files of the client's multiprocess mode (counter_<pid>.db and
    histogram_<pid>.db), every series in them from zero."""

    def __init__(self):
        # A process not started by the runner (a test running the API in-process) counts
        # in a directory of its own.
        directory = config.load().metrics_dir or tempfile.mkdtemp(
            prefix="ua-metrics-")
        self.pid = os.getpid()
        self.counters = MmapedDict(os.path.join(directory, f"counter_{self.pid}.db"))
        self.histograms = MmapedDict(os.path.join(directory, f"histogram_{self.pid}.db"))
        self.values = {}
        for key in _COUNTER_KEYS.values():
            self.values[key] = 0.0
            self.counters.write_value(key, 0.0, 0.0)
        for key in (_SUM_KEY, *_BUCKET_KEYS):
            self.values[key] = 0.0
            self.histograms.write_value(key, 0.0, 0.0)


_files = None
_lock = threading.Lock()    # the API server counts from the threads of its handlers


def open_files():
    """This process's files, opened again after a fork. The runner opens its own before
    anything starts, so that every series is exported at zero before its first event."""
    global _files
    if _files is None or _files.pid != os.getpid():
        _files = _Files()
    return _files


def count(family, *labels):
    """One more in a counter of COUNTERS, from any process or thread."""
    key = _COUNTER_KEYS[(family, labels)]
    with _lock:
        files = open_files()
        value = files.values[key] = files.values[key] + 1
        files.counters.write_value(key, value, 0.0)


def observe_routing(seconds):
    bucket = _BUCKET_KEYS[bisect.bisect_left(_BOUNDS, seconds)]
    with _lock:
        files = open_files()
        total = files.values[_SUM_KEY] = files.values[_SUM_KEY] + seconds
        files.histograms.write_value(_SUM_KEY, total, 0.0)
        value = files.values[bucket] = files.values[bucket] + 1
        files.histograms.write_value(bucket, value, 0.0)



def registration_member(number, field):
    """The gauge index entry of a binding (the same in registrar's connection-close Lua)."""
    return f"{number}|{hashlib.sha1(field.encode()).hexdigest()[:12]}"



def gauge_values(now):
    """{(family, device): value} counted in Redis, expired entries dropped first."""
    def read(r):
        pipe = r.pipeline(transaction=False)
        for prefix in GAUGES.values():
            for klass in DEVICE_CLASSES:
                pipe.zremrangebyscore(f"{prefix}{klass}", "-inf", now)
                pipe.zcard(f"{prefix}{klass}")
        counts = pipe.execute()[1::2]
        keys = [(family, klass) for family in GAUGES for klass in DEVICE_CLASSES]
        return dict(zip(keys, counts))
    return clients.call(read)


def mds_up(node):
    """{name: up} of the MDS whose health this proxy knows (absent: not known yet)."""
    def read(r):
        pipe = r.pipeline(transaction=False)
        pipe.hgetall(keyspace.MDS_KEY)
        pipe.hgetall(keyspace.mds_health_key(node))
        mds, health = pipe.execute()
        return {k.decode(): mds_health.status(codec.unpack(v), codec.unpack(health[k])
                                              if k in health else None)[0]
                for k, v in mds.items()}
    return {name: up for name, up in clients.call(read).items() if up is not None}


def kamailio_figures(ctl_socket, command):
    """The figures of one RPC answer printed by kamcmd ("name = value" for statistics,
    "name: value" in a struct), {} when Kamailio does not answer in time."""
    try:
        out = kamailio_rpc.call(ctl_socket, *RPC_COMMANDS[command], timeout=RPC_TIMEOUT)
    except kamailio_rpc.RpcError:
        return {}
    figures = {}
    for line in out.splitlines():
        name, sep, value = line.replace(" = ", ": ").partition(": ")
        if sep and value.strip().lstrip("-").isdigit():
            figures[name.strip()] = int(value)
    return figures


class StateCollector:
    """The gauges read at scrape time: Redis, then Kamailio."""

    def __init__(self, cfg):
        self.cfg = cfg

    def collect(self):
        try:
            yield from self.redis_gauges()
        except clients.StoreUnavailable:
            count("ua_store_errors_total")     # the rest is still worth a scrape
        answers = {command: kamailio_figures(self.cfg.kamailio_ctl, command)
                   for command in RPC_COMMANDS}
        for name, (doc, command, figure) in KAMAILIO_GAUGES.items():
            if figure in answers[command]:
                yield GaugeMetricFamily(name, doc, value=answers[command][figure])

    def redis_gauges(self):
        values = gauge_values(time.time())
        up = mds_up(self.cfg.node_id)
        for family in GAUGES:
            gauge = GaugeMetricFamily(family, GAUGE_HELP[family], labels=["device"])
            for klass in DEVICE_CLASSES:
                gauge.add_metric([klass], values[(family, klass)])
            yield gauge
        gauge = GaugeMetricFamily(MDS_UP, "1 when this proxy's OPTIONS probes find the MDS up",
                                  labels=["mds"])
        for name, state in sorted(up.items()):
            gauge.add_metric([name], 1 if state else 0)
        yield gauge


def exposition():
    """(body, content type) of GET /metrics: text format 0.0.4, no timestamps."""
    registry = CollectorRegistry(auto_describe=False)
    cfg = config.load()
    MultiProcessCollector(registry, path=cfg.metrics_dir)
    registry.register(StateCollector(cfg))
    return generate_latest(registry), CONTENT_TYPE_PLAIN_0_0_4
