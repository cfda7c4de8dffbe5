"""Configuration from the UA_* environment variables (contract section 1): the only module
that reads the process environment (a rule tests/unit/test_structure.py keeps)."""
import ipaddress
import os
import socket
from dataclasses import dataclass

MIN_EXPIRES = 60
MAX_EXPIRES = 3600
DEFAULT_EXPIRES = 600


@dataclass(frozen=True)
class Config:
    listen: str
    sip_port: int
    tls_port: int
    http_port: int
    https_port: int
    api_port: int               # the API server (lib/web), not Kamailio
    api_https_port: int
    api_max_body: int           # bytes; a bigger request body gets 413
    kamailio_ctl: str           # Kamailio's RPC socket (health); set by the runner
    domain: str
    redis_url: str
    api_token: str
    node_id: str
    media: str
    rtpengine_url: str
    voicemail_number: str
    voicemail_prefix: str
    max_contacts: int
    ws_origins: tuple
    mds_probe_interval: float   # seconds; 0: probing off
    mds_probe_threshold: int
    node_addr: str              # host:port other proxies relay to (lib/features/nodes)
    redis_sentinels: tuple      # ((host, port), ...): the master is found through them
    redis_master: str
    redis_wait: int             # replicas holding a write before it is acknowledged
    redis_timeout_ms: int       # the SIP path's wait for a Redis reply (lib/store)
    context_cache: int          # call contexts a process keeps (lib/store/wire.cached_script)
    flood_rate: int             # requests per second per source address; 0: no limit
    flood_block_seconds: int
    metrics: bool               # UA_METRICS=0: the SIP side counts nothing (make bench)
    call_events: bool           # UA_CALL_EVENTS=0: no presence, BLF, calls, history (make bench)
    api_auth_failures: int      # failed API authentications per address and minute; 0: no limit
    api_auth_block_seconds: int
    api_require_tls: bool       # credentials over plain HTTP only from the host itself
    subscribe_min_expires: int  # seconds; a BLF SUBSCRIBE asking less gets 423
    history_max: int            # calls kept per user's history
    max_call_seconds: int       # a call in progress not ended by then is forgotten
    overload_queue_percent: float   # of the SIP listener's receive buffer (lib/features/overload)
    overload_shm_percent: float     # of shared memory
    tls_cert: str               # the proxy's certificate and key (the API's HTTPS too)
    tls_key: str
    run_dir: str                # this node's run directory (set by the runner)
    var_dir: str                # the runner's state directory (the API token's file)
    metrics_dir: str            # PROMETHEUS_MULTIPROC_DIR: the counting processes' files
    api_url: str                # where ua-admin finds the API (default: this node's)


def load(env=None) -> Config:
    env = os.environ if env is None else env
    listen = env.get("UA_LISTEN", "127.0.0.1")
    origins = env.get("UA_WS_ORIGINS", "")
    sentinels = tuple(host_port(v) for v in env.get("UA_REDIS_SENTINELS", "").split(",")
                      if v.strip())
    return Config(
        listen=listen,
        sip_port=int(env.get("UA_SIP_PORT", "5060")),
        tls_port=int(env.get("UA_TLS_PORT", "5061")),
        http_port=int(env.get("UA_HTTP_PORT", "8088")),
        https_port=int(env.get("UA_HTTPS_PORT", "8443")),
        api_port=int(env.get("UA_API_PORT", "8089")),
        api_https_port=int(env.get("UA_API_HTTPS_PORT", "8444")),
        api_max_body=int(env.get("UA_API_MAX_BODY", str(32 * 1024 * 1024))),
        kamailio_ctl=env.get("UA_KAMAILIO_CTL", ""),
        domain=env.get("UA_DOMAIN", listen),
        redis_url=env.get("UA_REDIS_URL", ""),
        api_token=env.get("UA_API_TOKEN", ""),
        node_id=env.get("UA_NODE_ID", socket.gethostname()),
        media=env.get("UA_MEDIA", "rtpengine"),
        rtpengine_url=env.get("UA_RTPENGINE_URL", ""),
        voicemail_number=env.get("UA_VOICEMAIL_NUMBER", "*98"),
        voicemail_prefix=env.get("UA_VOICEMAIL_PREFIX", "vm-"),
        max_contacts=int(env.get("UA_MAX_CONTACTS", "5")),
        ws_origins=tuple(o.strip() for o in origins.split(",") if o.strip()),
        mds_probe_interval=float(env.get("UA_MDS_PROBE_INTERVAL", "5")),
        mds_probe_threshold=max(1, int(env.get("UA_MDS_PROBE_THRESHOLD", "2"))),
        node_addr=env.get("UA_NODE_ADDR", f"{listen}:{env.get('UA_SIP_PORT', '5060')}"),
        redis_sentinels=sentinels,
        redis_master=env.get("UA_REDIS_MASTER", "mymaster"),
        # Replication is asynchronous: without a replica's acknowledgement, a failover
        # may lose a write already acknowledged to a device or an API client.
        redis_wait=int(env.get("UA_REDIS_WAIT", "1" if sentinels else "0")),
        redis_timeout_ms=max(1, int(env.get("UA_REDIS_TIMEOUT_MS", "80"))),
        context_cache=max(0, int(env.get("UA_CONTEXT_CACHE", "4096"))),
        flood_rate=int(env.get("UA_FLOOD_RATE", "0")),
        flood_block_seconds=max(1, int(env.get("UA_FLOOD_BLOCK_SECONDS", "60"))),
        metrics=env.get("UA_METRICS", "1") != "0",
        call_events=env.get("UA_CALL_EVENTS", "1") != "0",
        api_auth_failures=max(0, int(env.get("UA_API_AUTH_FAILURES", "10"))),
        api_auth_block_seconds=max(1, int(env.get("UA_API_AUTH_BLOCK_SECONDS", "300"))),
        api_require_tls=env.get("UA_API_REQUIRE_TLS",
                                "0" if is_loopback(listen) else "1") != "0",
        subscribe_min_expires=int(env.get("UA_SUBSCRIBE_MIN_EXPIRES", "60")),
        history_max=int(env.get("UA_HISTORY_MAX", "1000")),
        max_call_seconds=int(env.get("UA_MAX_CALL_SECONDS", str(4 * 3600))),
        overload_queue_percent=float(env.get("UA_OVERLOAD_QUEUE_PERCENT", "50")),
        overload_shm_percent=float(env.get("UA_OVERLOAD_SHM_PERCENT", "60")),
        tls_cert=env.get("UA_TLS_CERT", ""),
        tls_key=env.get("UA_TLS_KEY", ""),
        run_dir=env.get("UA_RUN_DIR", ""),
        var_dir=env.get("UA_VAR_DIR", ""),
        metrics_dir=env.get("PROMETHEUS_MULTIPROC_DIR", ""),
        api_url=env.get("UA_API_URL", ""),
    )


def environment():
    """A copy of the process environment, for the runner to complete and hand to the
    processes it starts."""
    return dict(os.environ)


def export(env):
    """The runner's completed environment, made this process's own (what load() reads
    from then on)."""
    os.environ.update(env)


def is_loopback(host):
    """Whether an address (or name) is this host's own loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def origin_allowed(cfg, origin):
    """Whether a browser page from `origin` may open the WebSocket (UA_WS_ORIGINS; any
    when unset)."""
    if not origin:
        return False
    allowed = cfg.ws_origins
    if not allowed or "*" in allowed:
        return True
    norm = origin.rstrip("/").lower()
    return any(norm == o.rstrip("/").lower() for o in allowed)


def host_port(value):
    host, _, port = value.strip().rpartition(":")
    return host.strip("[]"), int(port)
