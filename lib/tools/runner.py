"""Start the proxy in the foreground (`make run`, and the integration tests): prepare
var/ (API token, self-signed certificate), start an embedded Redis when UA_REDIS_URL is
unset, drop the connection-bound registrations this node held before, run Kamailio and
the API server (lib/web, started again within 2 s whenever it dies), and stop everything
it started on SIGINT/SIGTERM."""
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def log(text):
    print(f"ua-proxy: {text}", flush=True)


def api_token(var):
    """The admin token kept in var/, made on first run; printed once, when it is made:
    later starts say where it is kept, so that collected logs never hold it."""
    path = var / "api_token"
    if not path.exists():
        token = secrets.token_urlsafe(32)
        path.write_text(token + "\n")
        path.chmod(0o600)
        log(f"admin API token (made now, kept in {path}): {token}")
    else:
        log(f"admin API token: kept in {path}")
    return path.read_text().strip()


def self_signed_certificate(var, domain):
    tls = var / "tls"
    cert, key = tls / "cert.pem", tls / "key.pem"
    if not cert.exists() or not key.exists():
        tls.mkdir(parents=True, exist_ok=True)
        san = f"IP:{domain}" if domain.replace(".", "").isdigit() or ":" in domain else f"DNS:{domain}"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
             "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={domain}",
             "-addext", f"subjectAltName={san}"],
            check=True, capture_output=True)
        key.chmod(0o600)
    return str(cert), str(key)


# A user's hashes hold msgpack values of a few hundred bytes (profile, contacts): above
# Redis's default of 64 bytes a hash leaves its compact listpack encoding, which costs
# about 150 bytes more per hash (see README, Redis key layout). The keys client-side
# caching tracks are bounded (README, The call context cache).
REDIS_TUNING = ["--hash-max-listpack-value", "1024", "--tracking-table-max-keys", "200000"]


def start_redis(var):
    """Embedded Redis: append-only file on, data and unix socket under var/redis."""
    data = var / "redis"
    data.mkdir(parents=True, exist_ok=True)
    sock = data / "redis.sock"
    proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
         "--dir", str(data), "--appendonly", "yes", "--appendfsync", "everysec",
         "--save", "", "--daemonize", "no", "--logfile", str(data / "redis.log"),
         *REDIS_TUNING])
    url = f"unix://{sock}"
    wait_for(lambda: redis_ping(url), 10, "embedded redis-server")
    return proc, url


def host_address(env):
    """UA_LISTEN, or this host's own address (e.g. a container's) when that is a wildcard."""
    local = env["UA_LISTEN"]
    return socket.gethostbyname(socket.gethostname()) if local in ("0.0.0.0", "::") else local


def rtp_interface(env):
    """rtpengine binds media on one concrete address, and writes UA_ADVERTISE in the SDP
    when set."""
    if env.get("UA_RTP_INTERFACE"):
        return env["UA_RTP_INTERFACE"]
    return host_address(env) + (f"!{env['UA_ADVERTISE']}" if env.get("UA_ADVERTISE") else "")


# Kamailio's listeners: (protocol, the setting that holds the port)
LISTENERS = (("udp", "UA_SIP_PORT"), ("tcp", "UA_SIP_PORT"), ("tls", "UA_TLS_PORT"),
             ("tcp", "UA_HTTP_PORT"), ("tls", "UA_HTTPS_PORT"))


def rtp_range(env):
    return int(env.get("UA_RTP_PORT_MIN", "30000")), int(env.get("UA_RTP_PORT_MAX", "39999"))


def check_rtp_range(env):
    """A UDP listener port inside the embedded rtpengine's media range is refused:
    rtpengine binds its media sockets with SO_REUSEADDR, as Kamailio does, so the kernel
    hands that port's SIP to whichever call's RTCP got it last, until the call ends (make
    bench lost 30 s of calls so when a test port fell there). Media is UDP only: a TCP or
    TLS listener there shares nothing with it."""
    low, high = rtp_range(env)
    for name in {name for proto, name in LISTENERS if proto == "udp"}:
        if low <= int(env[name]) <= high:
            raise SystemExit(f"ua-proxy: {name} {env[name]} is inside the RTP port range "
                             f"{low}-{high} (UA_RTP_PORT_MIN/UA_RTP_PORT_MAX): rtpengine "
                             f"would take its traffic; choose a port outside it")


def start_rtpengine(var, env):
    """Embedded rtpengine: user-space forwarding (no kernel module), ng control on a free
    loopback UDP port."""
    from lib.decisions import media
    data = var / "rtpengine"
    data.mkdir(parents=True, exist_ok=True)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"udp:127.0.0.1:{probe.getsockname()[1]}"
    interface = rtp_interface(env)
    log = open(data / "rtpengine.log", "ab")
    proc = subprocess.Popen(
        ["rtpengine", "--config-file=none", "--table=-1", "--foreground", "--log-stderr",
         f"--interface={interface}", f"--listen-ng={url.removeprefix('udp:')}",
         *(f"--port-{end}={port}" for end, port in zip(("min", "max"), rtp_range(env))),
         "--delete-delay=0", f"--pidfile={data / 'rtpengine.pid'}"],
        stdout=log, stderr=subprocess.STDOUT)
    log.close()
    wait_for(lambda: media.alive(url), 10, "embedded rtpengine")
    return proc, url


def redis_ping(url):
    import redis
    try:
        return redis.Redis.from_url(url, socket_timeout=0.5).ping()
    except (redis.RedisError, OSError):
        return False


def wait_for(check, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise SystemExit(f"ua-proxy: {what} did not become ready within {seconds} s")


def kamailio_command(env, run_dir):
    listen = env["UA_LISTEN"]
    host = f"[{listen}]" if ":" in listen else listen
    # Behind NAT or in a container listening on 0.0.0.0, Via and Record-Route must carry
    # an address the devices can reach.
    advertise = env.get("UA_ADVERTISE", "")
    defines = {
        "UA_KEMI_ENTRY": f'"{ROOT / "kemi" / "entry.py"}"',
        "UA_TLS_CERT": f'"{env["UA_TLS_CERT"]}"',
        "UA_TLS_KEY": f'"{env["UA_TLS_KEY"]}"',
        "UA_CTL_SOCKET": f'"{env["UA_KAMAILIO_CTL"]}"',
        "UA_DEBUG": env.get("UA_DEBUG", "1"),
        "UA_CHILDREN": env.get("UA_CHILDREN", "4"),
        "UA_BRIDGE_CONTACT": f'"sip:ua-control@{advertise or host}:{env["UA_SIP_PORT"]}"',
    }
    if env["UA_MEDIA"] == "rtpengine":
        defines["UA_WITH_RTPENGINE"] = "1"
        defines["UA_RTPENGINE_SOCK"] = f'"{env["UA_RTPENGINE_URL"]}"'
    cmd = ["kamailio", "-f", str(ROOT / "kamailio.cfg"), "-DD", "-E", "-Y", str(run_dir),
           "-P", str(run_dir / "kamailio.pid"), "-m", env.get("UA_SHM_MB", "256"),
           "-M", env.get("UA_PKG_MB", "16"),
           # TLSF: Kamailio's default allocator (qm) searches its free lists, and the many
           # short-lived values of the Python glue made that 20 % of a call's CPU (make bench)
           "-x", "tlsf"]
    for proto, port in LISTENERS:
        cmd += ["-l", f"{proto}:{host}:{env[port]}" + (f"/{advertise}:{env[port]}" if advertise else "")]
    for name, value in defines.items():
        cmd += ["-A", f"{name}={value}"]
    return cmd


# The API server (lib/web): a process of its own beside Kamailio, watched by main().
API_SERVER = [sys.executable, "-m", "lib.web.server"]
WATCH_INTERVAL = 0.1
API_RESTART_MIN = 1.0     # seconds between two starts of the API server


def python_path():
    """Kamailio embeds /usr/bin/python3: give it the project and the venv's packages."""
    venv = ROOT / ".venv" / "lib"
    paths = [str(ROOT)] + [str(p / "site-packages") for p in sorted(venv.glob("python3*"))]
    return os.pathsep.join(paths)


def main():
    from lib import config
    env = config.environment()
    var = Path(env.get("UA_VAR_DIR", ROOT / "var")).resolve()
    var.mkdir(parents=True, exist_ok=True)
    defaults = config.load({k: v for k, v in env.items() if k != "UA_REDIS_URL"})
    env.setdefault("UA_LISTEN", defaults.listen)
    for name, value in (("UA_SIP_PORT", defaults.sip_port), ("UA_TLS_PORT", defaults.tls_port),
                        ("UA_HTTP_PORT", defaults.http_port), ("UA_HTTPS_PORT", defaults.https_port),
                        ("UA_API_PORT", defaults.api_port),
                        ("UA_API_HTTPS_PORT", defaults.api_https_port),
                        ("UA_DOMAIN", defaults.domain), ("UA_NODE_ID", defaults.node_id)):
        env.setdefault(name, str(value))
    env.setdefault("UA_MEDIA", defaults.media)
    # Other proxies of the cluster relay to this one there (lib/features/nodes).
    env.setdefault("UA_NODE_ADDR", f"{env.get('UA_ADVERTISE') or host_address(env)}:"
                                   f"{env['UA_SIP_PORT']}")
    if env["UA_MEDIA"] not in ("rtpengine", "passthrough"):
        raise SystemExit("ua-proxy: UA_MEDIA must be rtpengine or passthrough")
    if env["UA_MEDIA"] == "rtpengine" and not env.get("UA_RTPENGINE_URL"):
        check_rtp_range(env)
    if not env.get("UA_API_TOKEN"):
        env["UA_API_TOKEN"] = api_token(var)
    if not env.get("UA_TLS_CERT") or not env.get("UA_TLS_KEY"):
        env["UA_TLS_CERT"], env["UA_TLS_KEY"] = self_signed_certificate(var, env["UA_DOMAIN"])

    started = []
    if not env.get("UA_REDIS_URL") and not env.get("UA_REDIS_SENTINELS"):
        redis_proc, env["UA_REDIS_URL"] = start_redis(var)
        started.append(redis_proc)
        log(f"embedded Redis at {env['UA_REDIS_URL']}")
    if env["UA_MEDIA"] == "rtpengine" and not env.get("UA_RTPENGINE_URL"):
        rtpengine_proc, env["UA_RTPENGINE_URL"] = start_rtpengine(var, env)
        started.append(rtpengine_proc)
        log(f"embedded rtpengine, ng control at {env['UA_RTPENGINE_URL']}")

    run_dir = var / "run" / env["UA_NODE_ID"]
    shutil.rmtree(run_dir, ignore_errors=True)
    # The metrics' files, one per counting process (lib/metrics), none left from a
    # previous run; the runner's own hold every series at zero from the start.
    env["PROMETHEUS_MULTIPROC_DIR"] = str(run_dir / "prometheus")
    os.makedirs(env["PROMETHEUS_MULTIPROC_DIR"])
    env["UA_RUN_DIR"] = str(run_dir)     # lib/features/overload's status, for the health endpoint
    config.export(env)
    from lib import metrics
    from lib.features import nodes, registrar
    metrics.open_files()
    dropped = registrar.drop_node_connections(env["UA_NODE_ID"])
    if dropped:
        log(f"dropped {dropped} registrations bound to connections of the previous run")
    nodes.announce(env["UA_NODE_ID"], env["UA_NODE_ADDR"])

    env["PYTHONPATH"] = python_path()
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    # Kamailio's RPC: the API server's health and metrics ask it there.
    env["UA_KAMAILIO_CTL"] = f"unix:{run_dir / 'ctl.sock'}"
    kamailio = subprocess.Popen(kamailio_command(env, run_dir), env=env)
    api = subprocess.Popen(API_SERVER, env=env, cwd=ROOT)
    started[:0] = [kamailio, api]
    log(f"SIP udp/tcp {env['UA_LISTEN']}:{env['UA_SIP_PORT']}, tls :{env['UA_TLS_PORT']}, "
        f"HTTP/WS :{env['UA_HTTP_PORT']} (/ws), HTTPS/WSS :{env['UA_HTTPS_PORT']}")
    log(f"API, health and /metrics on http://{env['UA_LISTEN']}:{env['UA_API_PORT']} and "
        f"https://{env['UA_LISTEN']}:{env['UA_API_HTTPS_PORT']}")
    log(f"UC Assistant (reference web page) at https://{env['UA_LISTEN']}:"
        f"{env['UA_API_HTTPS_PORT']}/ and http://{env['UA_LISTEN']}:{env['UA_API_PORT']}/")

    stopping = False

    def stop(signum, _frame):
        nonlocal stopping
        stopping = True
        for proc in started:
            if proc.poll() is None:
                proc.terminate()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    api_started = time.monotonic()
    while kamailio.poll() is None:
        time.sleep(WATCH_INTERVAL)
        if api.poll() is not None and not stopping:
            # Within 2 s of its death (contract section 1), but not in a tight loop
            # when it cannot start at all (its port taken).
            time.sleep(max(0.0, api_started + API_RESTART_MIN - time.monotonic()))
            log(f"API server exited ({describe_exit(api.returncode)}): restarting it")
            api = started[1] = subprocess.Popen(API_SERVER, env=env, cwd=ROOT)
            api_started = time.monotonic()
    code = kamailio.returncode
    stop(None, None)
    for proc in started[1:]:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return code


def describe_exit(code):
    return f"signal {-code}" if code < 0 else f"status {code}"


if __name__ == "__main__":
    sys.exit(main())
