"""`make bench`: this proxy (U) against a hand-written native Kamailio (N) and the same with
usrloc on db_redis (R), side by side in one run, with the same SIPp load, the same number
of Kamailio children and the same users (contract section 10, issue 7). A fourth, K, is
N's routing written in Python through KEMI: K/N is what the embedded interpreter costs
by itself, U/K what this project's logic and Redis add (measured with the first user
count, without a ladder).

How it runs. The proxies run at once on their own ports of 127.0.0.1 and are loaded
one at a time, in turns (N, K, R, U, N, K, R, U, ...), so that a drift of the machine
touches all of them alike. The proxies and their Redis servers are pinned to CPU 0, SIPp to CPU 1.
CPU time is read from /proc/<pid>/task/*/schedstat (nanoseconds on the CPU) of every
process of a proxy (Kamailio's, its Redis, for U with media its rtpengine), before and
after a measurement; per call = that time / successful calls.

Workloads (sipp_scenarios/*_load.xml, strict: any other answer fails the call):
  register: REGISTER with digest (401, REGISTER with credentials, 200) over a pool of users;
  calls:    the MDS (127.0.0.10) calls a registered user: INVITE/100/180/200/ACK/BYE/200, 
            answered by one SIPp playing every deskphone (127.0.0.20). For U the users are
            `ua` users with the webrtc selection stored and no browser registered: the
            device selection (and its fallback) is on the path.
The users of the call pool registered from the deskphone's address before the calls; the
register workload uses the other users (U sends a call to the address a REGISTER came
from, so the register load must not re-register the call pool from elsewhere).

The import row: U's API server takes a CSV of 100,000 new users in one request (wall
seconds, the peak RSS, VmHWM, of the API server plus that of its importer process) while a client reads one user's device
(GET /api/v1/users/{n}/device) back to back: its p50 and p99 during the import.

BENCH_QUICK=1: fewer repetitions, shorter points and no ladder (fixed rates,
BENCH_CALL_RATE / BENCH_REGISTER_RATE). Results: bench/results.json and a table on stdout.
"""
import http.client
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.probe import LatencyProbe  # noqa: E402
from lib.features import mds_health  # noqa: E402
from lib.tools.runner import wait_for  # noqa: E402
from lib.users import provisioning  # noqa: E402
from lib.users.profiles import ha1  # noqa: E402
from tests.support.processes import stop_process  # noqa: E402
from tests.support.redisproc import RedisProcess  # noqa: E402
from tests.support.sipp import free_port  # noqa: E402

QUICK = os.environ.get("BENCH_QUICK") == "1"
REPEATS = int(os.environ.get("BENCH_REPEATS", "2" if QUICK else "5"))
POINT_SECONDS = float(os.environ.get("BENCH_POINT_SECONDS", "3" if QUICK else "5"))
USER_COUNTS = tuple(int(n) for n in os.environ.get("BENCH_USERS", "100,100000").split(","))
LADDER_STEP_SECONDS = 3
CALL_POOL = 2000            # users called (pre-registered), at most half the users
CHILDREN = int(os.environ.get("BENCH_CHILDREN", "4"))
WARMUP_SECONDS = POINT_SECONDS if QUICK else 2 * POINT_SECONDS
WARMUP_POINTS_MAX = 2 if QUICK else 6
WARM_MISSES_PER_CALL = 0.02     # of U's cached read a call (its context)
PROXY_CPUS, LOAD_CPUS = {0}, {1}
PROXY_IP, MDS_IP, DESKPHONE_IP = "127.0.0.1", "127.0.0.10", "127.0.0.20"
REGISTRAR_IP = "127.0.0.21"     # where the register workload comes from
MDS_CALLER = "4000"
RING_MS = 2             # the deskphones' 180 comes this long before their 200
FIRST_NUMBER = 100000
PASSWORD = "pw-{}"
RESULTS = ROOT / "bench" / "results.json"
SCENARIOS = ROOT / "sipp_scenarios"


STARTED = time.monotonic()


def log(text):
    print(f"bench: [{time.monotonic() - STARTED:4.0f} s] {text}", file=sys.stderr, flush=True)


# --- processes: their tree, CPU time and memory --------------------------------------------

def children_of():
    """{ppid: [pid, ...]} of every process."""
    tree = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def descendants(root):
    tree, out, todo = children_of(), [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(tree.get(pid, ()))
    return out


def cpu_ns(pids):
    """Time on the CPU of every thread of these processes (schedstat: ns, exact)."""
    total = 0
    for pid in pids:
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
        except OSError:
            pass        # gone meanwhile (only ever a helper process)
    return total


def memory_kib(pid):
    """(RSS, private) of a process in KiB. Private memory (USS) is what the process costs
    of its own: RSS counts Kamailio's shared memory in every process that touched it."""
    values = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in ("Rss", "Private_Clean", "Private_Dirty"):
                values[name] = int(rest.split()[0])
    return values["Rss"], values["Private_Clean"] + values["Private_Dirty"]


def peak_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def pin(pids, cpus):
    for pid in pids:
        try:
            os.sched_setaffinity(pid, cpus)
        except OSError:
            pass


def answers_options(addr):
    """The proxy answers a SIP OPTIONS (it is up): the MDS health probe's own check."""
    return mds_health.probe({"proxy": f"sip:{addr[0]}:{addr[1]}"}, MDS_IP, PROXY_IP,
                            timeout=0.3)["proxy"]


# --- users ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Users:
    count: int

    @property
    def numbers(self):
        return [str(FIRST_NUMBER + i) for i in range(self.count)]

    @property
    def call_pool(self):
        return self.numbers[:min(CALL_POOL, self.count // 2)]

    @property
    def register_pool(self):
        return self.numbers[min(CALL_POOL, self.count // 2):]


def injection_file(path, numbers):
    """SIPp injection file: the number, and the credentials as a SIPp keyword."""
    path.write_text("SEQUENTIAL\n" + "".join(
        f"{n};[authentication username={n} password={PASSWORD.format(n)}]\n" for n in numbers))
    return path


# --- the proxies ---------------------------------------------------------------------------

class Proxy:
    """One proxy under test: its SIP address, its processes, its Redis (or None)."""
    name = "?"
    redis = None        # a redis.Redis client of the proxy's own Redis, if any
    redis_pid = None

    def __init__(self, workdir, users):
        self.workdir = Path(workdir) / self.name
        self.workdir.mkdir(parents=True)
        self.users = users
        self.port = free_port(PROXY_IP)
        self.addr = (PROXY_IP, self.port)

    def kamailio_pids(self):
        raise NotImplementedError

    def pids(self):
        return self.kamailio_pids() + ([self.redis_pid] if self.redis_pid else [])

    def pin(self):
        pin(self.pids(), PROXY_CPUS)

    def redis_memory(self):
        return self.redis.info("memory")["used_memory"] if self.redis else None


class NativeProxy(Proxy):
    """bench/native.cfg: N, R (usrloc on db_redis) or K (its routing in Python, KEMI)."""

    def __init__(self, workdir, users, name="N"):
        self.name = name
        super().__init__(workdir, users)
        self.proc = self.redis_server = None

    def start(self):
        db = self.workdir / "htable"
        db.mkdir()
        # db_text: a header line of typed columns, then one row per user (HA1s, no secret)
        rows = "".join(f"{i}:{n}:0:0:{ha1(n, PROXY_IP, PASSWORD.format(n))}:0\n"
                       for i, n in enumerate(self.users.numbers, 1))
        (db / "ha1").write_text("id(int,auto) key_name(string) key_type(int) value_type(int) "
                                "key_value(string) expires(int)\n" + rows)
        defines = {"BENCH_CHILDREN": str(CHILDREN), "BENCH_HTABLE_DB": f'"text://{db}"',
                   "BENCH_MDS_IP": f'"{MDS_IP}"',
                   "BENCH_CTL_SOCKET": f'"unix:{self.workdir / "ctl.sock"}"'}
        if self.name == "K":
            defines["WITH_KEMI"] = "1"
            defines["BENCH_KEMI_SCRIPT"] = f'"{ROOT / "bench" / "native_kemi.py"}"'
        if self.name == "R":
            self.redis_server = RedisProcess(str(self.workdir / "redis"),
                                             extra_args=["--appendfsync", "everysec"]).start()
            self.redis_pid = self.redis_server.proc.pid
            self.redis = redis.Redis(port=self.redis_server.port)
            # usrloc checks its table version in the `version` table
            self.redis.hset("version:entry::location",
                            mapping={"table_name": "location", "table_version": 9})
            defines["WITH_DB_REDIS"] = "1"
            defines["BENCH_REDIS_URL"] = f'"redis://127.0.0.1:{self.redis_server.port}/0"'
        cmd = ["kamailio", "-f", str(ROOT / "bench" / "native.cfg"), "-DD", "-E",
               "-Y", str(self.workdir), "-P", str(self.workdir / "kamailio.pid"),
               "-m", "256", "-M", "16", "-l", f"udp:{PROXY_IP}:{self.port}"]
        for name, value in defines.items():
            cmd += ["-A", f"{name}={value}"]
        with open(self.workdir / "kamailio.log", "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                         env={**os.environ, "BENCH_MDS_IP": MDS_IP})
        wait_for(lambda: answers_options(self.addr), 30, f"proxy {self.name}")
        self.pin()
        return self

    def kamailio_pids(self):
        return descendants(self.proc.pid)

    def stop(self):
        stop_process(self.proc)
        if self.redis_server:
            self.redis_server.stop()


def runner_module(root):
    """The runner of the tree at `root`: lib/tools/runner.py, or lib/runner.py in the trees
    before lib/ was split into packages (bench/side_by_side.py runs older revisions)."""
    return "lib.tools.runner" if (Path(root) / "lib" / "tools" / "runner.py").exists() \
        else "lib.runner"


class UniqueAccountProxy(Proxy):
    """U: this project, started as `make run` starts it (python -m lib.tools.runner); metrics
    False: with UA_METRICS=0 (the SIP side counts nothing); `root`: the tree it runs from
    (bench/side_by_side.py runs another revision beside)."""

    def __init__(self, workdir, users, media="passthrough", metrics=True, root=ROOT,
                 name=None, call_events=True):
        self.name = name or ("U" if media == "passthrough" else "U+rtpengine") + (
            "" if metrics else "-metrics-off") + ("" if call_events else "-no-events")
        super().__init__(workdir, users)
        self.media = media
        self.metrics = metrics
        self.call_events = call_events
        self.root = root
        self.proc = self.redis_proc = None

    def start(self):
        from lib.tools import runner
        var = self.workdir / "var"
        self.redis_proc, url = runner.start_redis(var)
        self.redis_pid = self.redis_proc.pid
        self.redis = redis.Redis.from_url(url)
        self.memory_empty = self.redis_memory()
        self.provision(url)
        self.memory_provisioned = self.redis_memory()
        api_port = free_port(PROXY_IP)
        self.api_url = f"http://{PROXY_IP}:{api_port}/api/v1"
        env = {k: v for k, v in os.environ.items() if not k.startswith("UA_")}
        env.update({"UA_LISTEN": PROXY_IP, "UA_SIP_PORT": str(self.port),
                    "UA_TLS_PORT": str(free_port(PROXY_IP)),
                    "UA_HTTP_PORT": str(free_port(PROXY_IP)),
                    "UA_HTTPS_PORT": str(free_port(PROXY_IP)),
                    "UA_API_PORT": str(api_port),
                    "UA_API_HTTPS_PORT": str(free_port(PROXY_IP)),
                    "UA_METRICS": "1" if self.metrics else "0",
                    "UA_CALL_EVENTS": "1" if self.call_events else "0",
                    "UA_REDIS_URL": url, "UA_API_TOKEN": "bench", "UA_NODE_ID": self.name,
                    "UA_VAR_DIR": str(var), "UA_MEDIA": self.media,
                    "UA_CHILDREN": str(CHILDREN), "UA_SHM_MB": "256", "UA_PKG_MB": "16"})
        with open(self.workdir / "proxy.log", "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", runner_module(self.root)],
                                         cwd=self.root, env=env, stdout=out,
                                         stderr=subprocess.STDOUT)
        wait_for(lambda: answers_options(self.addr), 60, f"proxy {self.name}")
        self.pin()
        return self

    def provision(self, url):
        """The users through the provisioning code the API uses (lib/users/provisioning); the
        call pool with the webrtc selection stored."""
        prov = provisioning.Provisioning(redis.Redis.from_url(url), PROXY_IP)
        prov.put_mds("mds1", {"name": "mds1", "uri": f"sip:{MDS_IP}",
                              "addresses": [MDS_IP]})
        numbers = self.users.numbers
        for start in range(0, len(numbers), 1000):
            prov.put_users([(n, {"number": n, "name": f"User {n}", "line_type": "ua",
                                 "mds": "mds1", "password": PASSWORD.format(n)}, None)
                            for n in numbers[start:start + 1000]])
        for n in self.users.call_pool:
            prov.set_device(n, "webrtc")

    def kamailio_pids(self):
        # the runner's tree: the runner itself (idle), Kamailio, rtpengine with media; not
        # the API server (no part of a call's path)
        api = self.api_server_pid()
        return [pid for pid in descendants(self.proc.pid) if pid != api]

    def api_server_pid(self):
        for pid in children_of().get(self.proc.pid, ()):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if b"lib.web.server" in f.read():
                        return pid
            except OSError:
                continue
        return None

    def api_ready(self):
        try:
            return self.api("GET", "/health")[0] == 200
        except OSError:
            return False

    def api(self, method, path, body=None, content_type="application/json", timeout=10):
        req = urllib.request.Request(self.api_url + path, data=body, method=method,
                                     headers={"Authorization": "Bearer bench",
                                              "Content-Type": content_type})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()

    def history_ids(self, number):
        """The call ids of a user's last calls, newest first, as the API shows them (one
        connection kept: the lag probe asks every millisecond)."""
        if getattr(self, "_http", None) is None:
            host, port = self.api_url.split("/")[2].split(":")
            self._http = http.client.HTTPConnection(host, int(port), timeout=5)
        self._http.request("GET", f"/api/v1/users/{number}/history?limit=20",
                           headers={"Authorization": "Bearer bench"})
        return [h["call_id"] for h in json.loads(self._http.getresponse().read())]

    def stop(self):
        stop_process(self.proc)
        stop_process(self.redis_proc)


# --- SIPp ----------------------------------------------------------------------------------

KEYS = {"domain": PROXY_IP, "caller": MDS_CALLER, "contact_params": "", "extra_headers": "",
        "user_agent": "sipp-bench", "rtp_port": "40000", "sdp_proto": "RTP/AVP", "user": "x"}


@dataclass
class LoadResult:
    successful: int
    failed: int
    call_rate: float        # calls SIPp started per second (below the rate asked: it lagged)


def sipp_command(scenario, local_ip, local_port, remote=None, inf=None, rate=None, calls=None,
                 keys=None):
    cmd = ["sipp", "-sf", str(SCENARIOS / f"{scenario}.xml"), "-i", local_ip,
           "-p", str(local_port), "-t", "u1", "-nostdin", "-recv_timeout", "10000",
           "-trace_stat", "-stf", "stat.csv", "-fd", "3600", "-trace_err", "-max_recv_loops", "10000",
           # bursts must not overflow the load generator's own socket buffer (a lost
           # datagram is a failed call that is not the proxy's)
           "-buff_size", "4194304"]
    if remote:
        cmd.append(f"{remote[0]}:{remote[1]}")
    if inf:
        cmd += ["-inf", str(inf)]
    if scenario == "deskphone_answer_load":
        cmd += ["-set", "ring_ms", str(RING_MS)]
    if rate:
        cmd += ["-r", str(rate), "-rp", "1000", "-m", str(calls), "-l", str(max(100, rate * 10))]
    # the Contact host a deskphone writes: its own address unless told (behind a NAT)
    for name, value in {"contact_host": f"{local_ip}:{local_port}", **KEYS,
                        **(keys or {})}.items():
        cmd += ["-key", name, value]
    return cmd


def start_sipp(cmd, workdir):
    workdir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.DEVNULL,
                            stderr=open(workdir / "stderr.log", "wb"))
    pin([proc.pid], LOAD_CPUS)
    return proc


def start_load(workdir, name, scenario, local_ip, remote, numbers, rate, calls, keys=None,
               local_port=None):
    """SIPp playing `scenario` over `numbers` at `rate` until `calls`, from `local_ip`; its
    injection file and its logs under workdir (`name`.csv, `name`/)."""
    inf = injection_file(workdir / f"{name}.csv", numbers)
    return start_sipp(sipp_command(scenario, local_ip, local_port or free_port(local_ip),
                                   remote, inf, rate, calls, keys), workdir / name)


def read_result(workdir):
    """Successful/failed calls from SIPp's statistics file (its last line is the final
    count, with the rate SIPp achieved)."""
    lines = (workdir / "stat.csv").read_text().splitlines()
    row = dict(zip(lines[0].split(";"), lines[-1].split(";")))
    return LoadResult(int(row["SuccessfulCall(C)"]), int(row["FailedCall(C)"]),
                      float(row["CallRate(C)"]))


def run_load(scenario, local_ip, remote, inf, rate, seconds, workdir, keys=None):
    """The load, then its result and how long it took."""
    calls = max(1, int(rate * seconds))
    started = time.monotonic()
    proc = start_sipp(sipp_command(scenario, local_ip, free_port(local_ip), remote, inf, rate,
                                   calls, keys), workdir)
    try:
        proc.wait(seconds * 3 + 30)
    except subprocess.TimeoutExpired:
        pass
    finally:
        stop_process(proc)
    return read_result(workdir), time.monotonic() - started


class Bench:
    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.runs = 0
        self.uas = None

    def run_dir(self, what):
        self.runs += 1
        return self.workdir / "sipp" / f"{self.runs:04d}-{what}"

    def start_deskphones(self):
        """One SIPp answering for every deskphone of every proxy, for the whole run."""
        self.uas_port = free_port(DESKPHONE_IP)
        self.answer_calls()

    def answer_calls(self):
        self.uas_dir = self.run_dir("deskphones")
        self.uas = start_sipp(sipp_command("deskphone_answer_load", DESKPHONE_IP, self.uas_port),
                              self.uas_dir)

    def stop(self):
        stop_process(self.uas)

    def register_call_pool(self, proxy):
        """The call pool registers from the deskphones' own address (the UAS is briefly
        stopped: one UDP port can't be bound twice); the UAS then answers there."""
        stop_process(self.uas)
        memory_before = proxy.redis_memory()
        inf = injection_file(self.workdir / f"{proxy.name}-{proxy.users.count}-callpool.csv",
                             proxy.users.call_pool)
        # A proxy just started may answer some of them 503 with Retry-After (its first
        # Redis round trips past their 80 ms on a busy machine): the pool registers again,
        # as phones would; registering twice changes nothing.
        for _ in range(3):
            run_dir = self.run_dir(f"{proxy.name}-callpool")
            proc = start_sipp(sipp_command("register_load", DESKPHONE_IP, self.uas_port,
                                           proxy.addr, inf, 500, len(proxy.users.call_pool)),
                              run_dir)
            proc.wait()
            result = read_result(run_dir)
            if not result.failed:
                break
            time.sleep(1)
        if proxy.redis:
            proxy.memory_registered_delta = proxy.redis_memory() - memory_before
        self.answer_calls()
        if result.failed or result.successful != len(proxy.users.call_pool):
            raise SystemExit(f"bench: registering the call pool on {proxy.name} failed: {result}")

    def measure(self, proxy, workload, rate, seconds=POINT_SECONDS):
        """One point: the load at `rate` for `seconds`; CPU of the proxy's processes."""
        time.sleep(0.5)     # let the previous point's transactions end
        before = cpu_ns(proxy.pids())
        redis_before = cpu_ns([proxy.redis_pid]) if proxy.redis_pid else 0
        misses_before = context_misses(proxy)
        latencies, probe_failed, lags = [], 0, None
        if workload == "calls":
            inf = self.workdir / f"{proxy.name}-{proxy.users.count}-callpool.csv"
            history = (proxy.history_ids if isinstance(proxy, UniqueAccountProxy)
                       and proxy.call_events else None)
            with LatencyProbe(MDS_IP, proxy.addr, proxy.users.call_pool,
                              history=history) as probe:
                result, elapsed = run_load("mds_call_load", MDS_IP, proxy.addr, inf, rate,
                                           seconds, self.run_dir(f"{proxy.name}-calls-{rate}"))
            # the probe's calls don't retransmit: a datagram lost under load is a probe
            # failure, reported, but not a failed call (SIPp's retransmit, like phones)
            latencies, probe_failed = probe.latencies_ms, probe.failed
            if history:
                lags = {"ms": probe.lags_ms, "lost": probe.lag_lost}
        else:
            inf = injection_file(self.workdir / f"{proxy.name}-{proxy.users.count}-regpool.csv",
                                 proxy.users.register_pool)
            result, elapsed = run_load("register_load", REGISTRAR_IP, proxy.addr, inf, rate,
                                       seconds, self.run_dir(f"{proxy.name}-register-{rate}"),
                                       {"contact_host": f"{REGISTRAR_IP}:5060"})
        spent = cpu_ns(proxy.pids()) - before
        redis_spent = (cpu_ns([proxy.redis_pid]) if proxy.redis_pid else 0) - redis_before
        invites = result.successful + len(latencies) + probe_failed
        misses = context_misses(proxy) - misses_before if misses_before is not None else None
        return {"rate": rate, "successful": result.successful, "failed": result.failed,
                # a call's cached read: its context
                "cache_misses_per_call": (misses / invites
                                          if misses is not None and workload == "calls" else None),
                "achieved_rate": result.call_rate,
                "proxy_cpu_share": spent / 1e9 / elapsed,    # of one core
                "cpu_ms_per_op": spent / 1e6 / max(1, result.successful),
                "redis_cpu_ms_per_op": redis_spent / 1e6 / max(1, result.successful),
                "latencies_ms": latencies, "probe_failed": probe_failed,
                "call_event_lag": lags}


def context_misses(proxy):
    """U's cached reads (call contexts) that went to Redis so far
    (lib/store/wire.cached_script opts each such read into tracking with CLIENT CACHING)."""
    if not isinstance(proxy, UniqueAccountProxy):
        return None
    return proxy.redis.info("commandstats").get("cmdstat_client|caching", {}).get("calls", 0)


# --- the run -------------------------------------------------------------------------------

def ladder(bench, proxy, workload, start_rate, seconds=LADDER_STEP_SECONDS):
    """Highest rate with zero failed calls, all at the rate asked: up by 25% until a step
    fails, then up from the last good rate in steps of 5% of it. Returns (rate, what
    limited it: the proxy when its processes used most of their core at the failing step,
    else the load generator). Steps of `seconds`."""
    good, rate, step = 0, start_rate, None
    while True:
        point = bench.measure(proxy, workload, rate, seconds=seconds)
        ok = (point["failed"] == 0 and point["successful"] == int(rate * seconds)
              and point["achieved_rate"] >= 0.95 * rate)
        log(f"ladder {proxy.name} {workload} {rate}/s: {'ok' if ok else 'FAILED'} "
            f"(achieved {point['achieved_rate']:.0f}/s, proxy CPU "
            f"{point['proxy_cpu_share']:.0%} of a core)")
        if ok:
            good = rate
        else:
            limit = "proxy" if point["proxy_cpu_share"] >= 0.8 else "load generator"
            if step is None and good:
                step = max(1, round(good * 0.05))
                time.sleep(3)      # let the failed step's retransmissions die out
            else:
                return good, limit
        rate = good + step if step else round(rate * 1.25)


def summary(values):
    values = sorted(values)
    return {"min": values[0], "median": statistics.median(values), "max": values[-1]}


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] if values else None


def memory_report(proxy):
    rows = [memory_kib(pid) for pid in proxy.kamailio_pids()
            if Path(f"/proc/{pid}/comm").read_text().strip() == "kamailio"]
    return {"processes": len(rows),
            "rss_kib_per_process": round(statistics.mean(r[0] for r in rows)),
            "private_kib_per_process": round(statistics.mean(r[1] for r in rows))}


def measure_users(bench, workdir, users, rates, with_ladder, with_kemi):
    proxies = [NativeProxy(workdir, users), NativeProxy(workdir, users, "R"),
               UniqueAccountProxy(workdir, users)]
    if with_kemi:
        proxies.insert(1, NativeProxy(workdir, users, "K"))
        # what the live features (presence, BLF, calls in progress, history) cost
        proxies.append(UniqueAccountProxy(workdir, users, call_events=False))
    out = {}
    try:
        for proxy in proxies:
            proxy.start()
            bench.register_call_pool(proxy)
            log(f"{users.count} users, {proxy.name} started, call pool registered")
        if with_ladder:
            for workload in ("calls", "register"):
                # K is about CPU per request; its ladder would only lengthen the run
                for proxy in (p for p in proxies if p.name != "K"):
                    highest, limit = ladder(bench, proxy, workload, rates[f"ladder_{workload}"])
                    out.setdefault(proxy.name, {}).update({f"max_{workload}_rate": highest,
                                                           f"max_{workload}_limit": limit})
            rates.update(common_rates(out))
        for proxy in proxies:
            warm_up(bench, proxy, rates["calls"])
        points = {p.name: {"calls": [], "register": []} for p in proxies}
        for rep in range(REPEATS):
            log(f"{users.count} users, repetition {rep + 1}/{REPEATS}")
            for proxy in proxies:
                for workload in ("calls", "register"):
                    points[proxy.name][workload].append(
                        bench.measure(proxy, workload, rates[workload]))
        for proxy in proxies:
            result = out.setdefault(proxy.name, {})
            for workload, runs in points[proxy.name].items():
                result[workload] = {
                    "rate": rates[workload],
                    "failed": sum(r["failed"] for r in runs),
                    "cpu_ms_per_op": summary([r["cpu_ms_per_op"] for r in runs]),
                    "redis_cpu_ms_per_op": summary([r["redis_cpu_ms_per_op"] for r in runs])}
                if workload == "calls":
                    result[workload]["probe_calls_lost"] = sum(r["probe_failed"] for r in runs)
                    if runs[0]["cache_misses_per_call"] is not None:
                        result[workload]["cache_misses_per_call"] = summary(
                            [r["cache_misses_per_call"] for r in runs])
                    result[workload]["invite_180_ms"] = {
                        "p50": summary([percentile(r["latencies_ms"], 0.5) for r in runs]),
                        "p99": summary([percentile(r["latencies_ms"], 0.99) for r in runs])}
                    if runs[0]["call_event_lag"] is not None:
                        result[workload]["call_event_lag"] = lag_summary(runs)
            result["kamailio_memory"] = memory_report(proxy)
            if proxy.redis:
                # the call pool's registrations, measured before any call
                result["redis_bytes_per_registration"] = round(
                    proxy.memory_registered_delta / len(users.call_pool))
            if isinstance(proxy, UniqueAccountProxy):
                result["redis_bytes_per_provisioned_user"] = round(
                    (proxy.memory_provisioned - proxy.memory_empty) / users.count)
    finally:
        for proxy in proxies:
            proxy.stop()
    return out


def lag_summary(runs):
    """The lag probe's readings of every point together (BYE sent -> in the API's history)."""
    lags = [v for r in runs for v in r["call_event_lag"]["ms"]] or [float("nan")]
    return {"readings": len(lags), "lost": sum(r["call_event_lag"]["lost"] for r in runs),
            "p50_ms": percentile(lags, 0.5), "p99_ms": percentile(lags, 0.99),
            "max_ms": max(lags)}


def warm_up(bench, proxy, rate):
    """Unmeasured calls, so that what a proxy keeps warm (U's client-side cache, every
    proxy's CPU caches) starts in the state a steady load leaves it in. U's cache fills one
    (user, process) pair at a time: with 2,000 users called at random over 4 processes, one
    point leaves about a third of the pairs cold, so U goes on until a point misses little."""
    for _ in range(WARMUP_POINTS_MAX):
        point = bench.measure(proxy, "calls", rate, seconds=WARMUP_SECONDS)
        misses = point["cache_misses_per_call"]
        log(f"{proxy.users.count} users, warm-up of {proxy.name}"
            + ("" if misses is None else f": {misses:.3f} cache misses per call"))
        if misses is None or misses < WARM_MISSES_PER_CALL:
            return


def common_rates(maxima):
    """The rates of the primary figures: about half of N's highest, and no more than
    80% of what the slowest proxy sustains."""
    rates = {}
    for workload in ("calls", "register"):
        highest = [m[f"max_{workload}_rate"] for m in maxima.values()]
        rates[workload] = max(10, round(min(maxima["N"][f"max_{workload}_rate"] * 0.5,
                                            min(highest) * 0.8) / 10) * 10)
    return rates


def media_row(bench, workdir, rates):
    """U with rtpengine against U passthrough: CPU per call, rtpengine included, at half
    the common rate (rtpengine shares the proxy's core and doubles a call's cost)."""
    rate = rates["calls"] // 2
    users = Users(100)
    out = {}
    for media in ("passthrough", "rtpengine"):
        proxy = UniqueAccountProxy(workdir, users, media=media)
        try:
            proxy.start()
            bench.register_call_pool(proxy)
            runs = [bench.measure(proxy, "calls", rate) for _ in range(REPEATS)]
            out[proxy.name] = {"rate": rate, "failed": sum(r["failed"] for r in runs),
                               "cpu_ms_per_op": summary([r["cpu_ms_per_op"] for r in runs])}
        finally:
            proxy.stop()
    return out


def metrics_row(bench, workdir, rates):
    """U with its metrics on against U with UA_METRICS=0, side by side: all running, loaded
    in turns at the common call rate, twice as many points as the main table (the
    difference sought is a few per cent). A second U with its metrics on makes an A/A pair:
    two identical proxies differ in one run by what their separate processes, ports and
    Redis servers happen to cost, and that spread is what on/off is read against. The
    order is rotated every round; the ratios are the medians of each round's ratios."""
    users = Users(100)
    proxies = [UniqueAccountProxy(workdir, users),
               UniqueAccountProxy(workdir, users, metrics=False),
               UniqueAccountProxy(workdir, users, name="U-b")]
    rounds = []
    try:
        for proxy in proxies:
            proxy.start()
            bench.register_call_pool(proxy)
        for proxy in proxies:
            warm_up(bench, proxy, rates["calls"])
        for rep in range(2 * REPEATS):
            log(f"metrics on and off, repetition {rep + 1}/{2 * REPEATS}")
            order = proxies[rep % 3:] + proxies[:rep % 3]
            rounds.append({proxy.name: bench.measure(proxy, "calls", rates["calls"])
                           for proxy in order})
    finally:
        for proxy in proxies:
            proxy.stop()
    row = {proxy.name: {"rate": rates["calls"],
                        "failed": sum(r[proxy.name]["failed"] for r in rounds),
                        "cpu_ms_per_op": summary([r[proxy.name]["cpu_ms_per_op"]
                                                  for r in rounds])}
           for proxy in proxies}
    row["on/off"] = summary([r["U"]["cpu_ms_per_op"] / r["U-metrics-off"]["cpu_ms_per_op"]
                             for r in rounds])
    row["A/A"] = summary([r["U-b"]["cpu_ms_per_op"] / r["U"]["cpu_ms_per_op"] for r in rounds])
    return row


IMPORT_USERS = 100_000
IMPORT_FIRST = 500_000


def import_row(workdir):
    """U's API server: a CSV of 100,000 new users in one request, and the latency of
    GET /users/{n}/device (back to back, one client) while it runs."""
    proxy = UniqueAccountProxy(workdir, Users(100))
    number = proxy.users.numbers[0]
    lines = ["exten,firstname,lastname,line_type,sip_secret,mds"] + [
        f"{IMPORT_FIRST + i},User,{i},ua,{PASSWORD.format(i)},mds1"
        for i in range(IMPORT_USERS)]
    body = ("\r\n".join(lines) + "\r\n").encode()
    latencies, failed, done = [], [], threading.Event()

    def reads():
        while not done.is_set():
            started = time.perf_counter()
            try:
                proxy.api("GET", f"/users/{number}/device")
            except OSError as exc:          # HTTPError included: a 503 is counted
                failed.append(str(exc))
                continue
            latencies.append((time.perf_counter() - started) * 1000)
    try:
        proxy.start()
        wait_for(proxy.api_ready, 30, "the API server")
        pid = proxy.api_server_pid()
        rss_before = memory_kib(pid)[0]
        reader = threading.Thread(target=reads, daemon=True)
        log(f"import row: {IMPORT_USERS:,} users ({len(body):,} bytes) in one request")
        started = time.monotonic()
        reader.start()
        try:
            status, answer = proxy.api("POST", "/users/import", body, "text/csv", timeout=600)
        finally:
            seconds = time.monotonic() - started
            done.set()
            reader.join()
        assert status == 200 and json.loads(answer)["created"] == IMPORT_USERS, answer[:300]
        # The API server and its importer process (lib/web/users_csv.py), each at its peak.
        peak = sum(peak_rss_kib(p) for p in descendants(pid))
    finally:
        proxy.stop()
    return {"users": IMPORT_USERS, "bytes": len(body), "seconds": round(seconds, 2),
            "api_server_rss_kib_before": rss_before, "api_server_peak_rss_kib": peak,
            "device_get_during_import_ms": {
                "requests": len(latencies) + len(failed), "failed": len(failed),
                "failures": sorted(set(failed)),
                "p50": round(percentile(latencies, 0.5), 2),
                "p99": round(percentile(latencies, 0.99), 2),
                "max": round(max(latencies), 2)}}


AUTH_ROUND = 1000      # GETs a round of the API auth row
AUTH_ROUNDS = 2 * REPEATS


def api_auth_row(workdir):
    """The API's normal path with the limit on failed authentications (issue 22) and
    without it (UA_API_AUTH_FAILURES=0): GET /users/{n}/device with the user's own Basic
    credentials, back to back from one client, against three API servers beside one proxy
    (its Redis, its users): the limit on, off, and off again (an A/A pair: what two
    identical servers differ by in the same run is the noise the on/off ratio is read
    against). AUTH_ROUNDS rounds of AUTH_ROUND requests to each, the order rotated every
    round; the ratios are the medians of the rounds' p50 ratios, with their range."""
    import base64
    import http.client
    from lib.tools.runner import API_SERVER
    proxy = UniqueAccountProxy(workdir, Users(100))
    number = proxy.users.numbers[0]
    auth = "Basic " + base64.b64encode(f"{number}:{PASSWORD.format(number)}".encode()).decode()
    names = (("limited", "10"), ("unlimited", "0"), ("unlimited-b", "0"))
    servers, rounds = {}, []
    try:
        proxy.start()
        for name, failures in names:
            port = free_port(PROXY_IP)
            env = {k: v for k, v in os.environ.items() if not k.startswith("UA_")}
            env.update({"UA_LISTEN": PROXY_IP, "UA_API_PORT": str(port),
                        "UA_REDIS_URL": f"unix://{proxy.workdir / 'var' / 'redis' / 'redis.sock'}",
                        "UA_API_TOKEN": "bench", "UA_API_AUTH_FAILURES": failures,
                        "PROMETHEUS_MULTIPROC_DIR": str(workdir / f"metrics-{name}")})
            (workdir / f"metrics-{name}").mkdir(parents=True)
            servers[name] = (subprocess.Popen(API_SERVER, cwd=ROOT, env=env,
                                              stdout=subprocess.DEVNULL,
                                              stderr=subprocess.STDOUT), port)
            wait_for(lambda: answers_http(PROXY_IP, port), 30, f"API server {name}")
        pin([proc.pid for proc, _ in servers.values()], PROXY_CPUS)
        order = list(servers)
        for n in range(AUTH_ROUNDS + 1):      # the first round warms every server up
            latencies = {}
            for name in order[n % 3:] + order[:n % 3]:
                conn = http.client.HTTPConnection(PROXY_IP, servers[name][1], timeout=5)
                ms = latencies[name] = []
                for _ in range(AUTH_ROUND):
                    started = time.perf_counter()
                    conn.request("GET", f"/api/v1/users/{number}/device",
                                 headers={"Authorization": auth})
                    resp = conn.getresponse()
                    resp.read()
                    assert resp.status == 200, resp.status
                    ms.append((time.perf_counter() - started) * 1000)
                conn.close()
            if n:
                rounds.append(latencies)
    finally:
        for proc, _ in servers.values():
            stop_process(proc)
        proxy.stop()
    row = {name: {"requests": sum(len(r[name]) for r in rounds),
                  "p50": round(percentile([x for r in rounds for x in r[name]], 0.5), 3),
                  "p99": round(percentile([x for r in rounds for x in r[name]], 0.99), 3)}
           for name, _ in names}
    for key, a, b in (("p50_ratio", "limited", "unlimited"),
                      ("aa_p50_ratio", "unlimited-b", "unlimited")):
        row[key] = {k: round(v, 3) for k, v in summary(
            [percentile(r[a], 0.5) / percentile(r[b], 0.5) for r in rounds]).items()}
    return row


def answers_http(ip, port):
    try:
        with urllib.request.urlopen(f"http://{ip}:{port}/api/v1/openapi.json", timeout=1):
            return True
    except OSError:
        return False


# The targets of issue 24: (the ratio's name, its upper bound).
TARGETS = (("U/N cpu per call", 1.6), ("U/N cpu per REGISTER", 2.3),
           ("U/R cpu per call", 0.65), ("U 100k/100 users cpu per call", 1.05),
           ("U-N p99 INVITE->180 ms", 1.0), ("U-N p99 INVITE->180 ms, 100k users", 1.0),
           ("U redis bytes per registered ua user", 1024),
           ("U call event lag p99 ms", 50))


def ratios(results):
    """The figures the targets of issues 7 and 24 are about, from the medians."""
    small, large = (results["users"][str(c)] for c in USER_COUNTS)
    med = lambda r, w: r[w]["cpu_ms_per_op"]["median"]     # noqa: E731
    out = {}
    for base in ("N", "R"):
        out[f"U/{base} cpu per call"] = med(small["U"], "calls") / med(small[base], "calls")
        out[f"U/{base} cpu per REGISTER"] = (med(small["U"], "register")
                                            / med(small[base], "register"))
        out[f"U/{base} cpu per call, 100k users"] = (med(large["U"], "calls")
                                                    / med(large[base], "calls"))
        for w in ("calls", "register"):
            if small[base].get(f"max_{w}_rate"):
                out[f"U/{base} highest {w} rate"] = (small["U"][f"max_{w}_rate"]
                                                    / small[base][f"max_{w}_rate"])
        p99 = lambda r: r["calls"]["invite_180_ms"]["p99"]["median"]    # noqa: E731
        out[f"U-{base} p99 INVITE->180 ms"] = p99(small["U"]) - p99(small[base])
    for workload, what in (("calls", "call"), ("register", "REGISTER")):
        out[f"K/N cpu per {what} (Python interpreter)"] = (med(small["K"], workload)
                                                          / med(small["N"], workload))
        out[f"U/K cpu per {what} (logic and Redis)"] = (med(small["U"], workload)
                                                       / med(small["K"], workload))
    out["U 100k/100 users cpu per call"] = med(large["U"], "calls") / med(small["U"], "calls")
    out["U-N p99 INVITE->180 ms, 100k users"] = (
        large["U"]["calls"]["invite_180_ms"]["p99"]["median"]
        - large["N"]["calls"]["invite_180_ms"]["p99"]["median"])
    out["U redis bytes per registered ua user"] = (
        large["U"]["redis_bytes_per_provisioned_user"]
        + large["U"]["redis_bytes_per_registration"])
    out["U call event lag p99 ms"] = small["U"]["calls"]["call_event_lag"]["p99_ms"]
    out["U call event lag p99 ms, 100k users"] = large["U"]["calls"]["call_event_lag"]["p99_ms"]
    for workload, what in (("calls", "call"), ("register", "REGISTER")):
        out[f"U without call events/N cpu per {what}"] = (
            med(small["U-no-events"], workload) / med(small["N"], workload))
    media = results["media"]
    out["U+rtpengine/U cpu per call"] = (media["U+rtpengine"]["cpu_ms_per_op"]["median"]
                                         / media["U"]["cpu_ms_per_op"]["median"])
    out["U metrics on/off cpu per call"] = metrics_ratio(results["metrics"])
    return {k: round(v, 3) + 0.0 for k, v in out.items()}     # + 0.0: no "-0.0"


def metrics_ratio(side):
    """The metrics row's figure: U's CPU per call with its metrics against without (the
    median of the rounds' ratios)."""
    return side["on/off"]["median"]


def highest(result, workload):
    if f"max_{workload}_rate" not in result:
        return "-"
    limit = "" if result[f"max_{workload}_limit"] == "proxy" else " (SIPp-bound)"
    return f"{result[f'max_{workload}_rate']}{limit}"


def table(results):
    lines = [f"make bench {results['date']} on {results['machine']}"
             f" ({'quick' if results['quick'] else 'full'}: {results['repeats']} repetitions of "
             f"{results['point_seconds']} s, {results['children']} children, calls at "
             f"{results['rates']['calls']}/s, REGISTER at {results['rates']['register']}/s)",
             "",
             "| users | proxy | CPU ms/call | CPU ms/REGISTER | INVITE->180 p50 / p99 ms "
             "| highest calls/s | highest REGISTER/s | Kamailio private KiB/process |",
             "|---|---|---|---|---|---|---|---|"]
    fmt = lambda s: f"{s['median']:.3f} ({s['min']:.3f}-{s['max']:.3f})"    # noqa: E731
    for count, per_proxy in results["users"].items():
        for name, r in per_proxy.items():
            lat = r["calls"]["invite_180_ms"]
            lines.append(
                f"| {int(count):,} | {name} | {fmt(r['calls']['cpu_ms_per_op'])} "
                f"| {fmt(r['register']['cpu_ms_per_op'])} "
                f"| {lat['p50']['median']:.2f} / {lat['p99']['median']:.2f} "
                f"| {highest(r, 'calls')} | {highest(r, 'register')} "
                f"| {r['kamailio_memory']['private_kib_per_process']:,} |")
    for row in ("media", "metrics"):
        for name, r in results[row].items():
            if "rate" not in r:     # the metrics row's ratios, below
                continue
            lines.append(f"| 100 | {name} ({row} row: calls at {r['rate']}/s, "
                         f"{r['failed']} failed) | {fmt(r['cpu_ms_per_op'])} | | | | | |")
    side = results["metrics"]
    lines += ["", f"Metrics row, ratios of each round's CPU per call: on/off "
              f"{fmt(side['on/off'])}, A/A (U-b/U, both on) {fmt(side['A/A'])}"]
    imp = results["import"]
    get = imp["device_get_during_import_ms"]
    lines += ["", f"U's API server: {imp['users']:,} users ({imp['bytes']:,} bytes of CSV) "
              f"imported in one request in {imp['seconds']:.1f} s, peak RSS (server + importer) "
              f"{imp['api_server_peak_rss_kib'] / 1024:.0f} MiB "
              f"({imp['api_server_rss_kib_before'] / 1024:.0f} MiB before); "
              f"GET /api/v1/users/{{n}}/device meanwhile: p50 {get['p50']:.1f} ms, "
              f"p99 {get['p99']:.1f} ms, max {get['max']:.1f} ms ({get['requests']} requests, "
              f"{get['failed']} failed)"]
    auth = results["api_auth"]
    lines += ["", "U's API, GET /api/v1/users/{n}/device with Basic credentials, back to back: "
              f"limit on failed authentications on p50 {auth['limited']['p50']:.2f} ms, "
              f"p99 {auth['limited']['p99']:.2f} ms; off p50 {auth['unlimited']['p50']:.2f} ms, "
              f"p99 {auth['unlimited']['p99']:.2f} ms (on/off p50 {fmt(auth['p50_ratio'])}, "
              f"off/off p50 {fmt(auth['aa_p50_ratio'])}, medians of {AUTH_ROUNDS} rounds; "
              f"{auth['limited']['requests']} requests each)"]
    misses = [f"{int(count):,} users {r['calls']['cache_misses_per_call']['median']:.3f} "
              f"({r['calls']['cache_misses_per_call']['min']:.3f}-"
              f"{r['calls']['cache_misses_per_call']['max']:.3f})"
              for count, per_proxy in results["users"].items()
              for name, r in per_proxy.items() if "cache_misses_per_call" in r["calls"]]
    if misses:
        lines += ["", "U's cached reads (a call's context) that went to Redis, per call: " + ", ".join(misses)]
    lags = [f"{int(count):,} users p50 {lag['p50_ms']:.1f} ms, p99 {lag['p99_ms']:.1f} ms, "
            f"max {lag['max_ms']:.1f} ms ({lag['readings']} readings, {lag['lost']} not seen)"
            for count, per_proxy in results["users"].items()
            if (lag := per_proxy["U"]["calls"].get("call_event_lag"))]
    if lags:
        lines += ["", "U's call event lag (a probe call's BYE sent -> the call in the API's "
                  "history): " + "; ".join(lags)]
    lines += ["", "| ratio (medians) | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in results["ratios"].items()]
    lines += ["", "| target (issue 24) | measured | met |", "|---|---|---|"]
    lines += [f"| {name} ≤ {bound} | {results['ratios'][name]} | "
              f"{'yes' if results['ratios'][name] <= bound else 'no'} |"
              for name, bound in TARGETS]
    return "\n".join(lines)


# BENCH_ROWS=metrics,api_auth (any of ROWS): only those side-by-side rows, printed as JSON
# and kept in bench/rows.json; bench/results.json is left as it is.
ROWS = ("media", "metrics", "import", "api_auth")


def rows_only(names):
    pin([os.getpid()], LOAD_CPUS)
    workdir = Path(tempfile.mkdtemp(prefix="ua-bench-rows-"))
    # The main table's common rate (2026-11-27): a proxy's CPU per call falls as the rate
    # rises, since its timers' and Redis's wake-ups cost the same per second whatever the
    # load (about a tenth of a core here), and a row about a few per cent is read where
    # the main rows are, not where those fixed costs are a third of a call.
    rates = {"calls": int(os.environ.get("BENCH_CALL_RATE", "980"))}
    bench = Bench(workdir)
    out = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "machine": f"{platform.node()}, {os.cpu_count()} CPUs", "repeats": REPEATS}
    try:
        bench.start_deskphones()
        for name in names:
            out[name] = {"media": lambda: media_row(bench, workdir / name, rates),
                         "metrics": lambda: metrics_row(bench, workdir / name, rates),
                         "import": lambda: import_row(workdir / name),
                         "api_auth": lambda: api_auth_row(workdir / name)}[name]()
    finally:
        bench.stop()
    if "metrics" in out:
        out["U metrics on/off cpu per call"] = round(metrics_ratio(out["metrics"]), 3)
    (Path(__file__).resolve().parent / "rows.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


def main():
    rows = [r for r in os.environ.get("BENCH_ROWS", "").split(",") if r]
    if rows:
        unknown = set(rows) - set(ROWS)
        if unknown:
            raise SystemExit(f"BENCH_ROWS: unknown {sorted(unknown)}; rows are {', '.join(ROWS)}")
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
        return rows_only(rows)
    # stopped by a signal, the finally clauses still stop every process started
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    pin([os.getpid()], LOAD_CPUS)      # the latency probe runs here, beside SIPp
    workdir = Path(tempfile.mkdtemp(prefix="ua-bench-"))
    rates = {"calls": int(os.environ.get("BENCH_CALL_RATE", "300")),
             "register": int(os.environ.get("BENCH_REGISTER_RATE", "300")),
             "ladder_calls": 200, "ladder_register": 200}
    bench = Bench(workdir)
    results = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "machine": f"{platform.node()}, {os.cpu_count()} CPUs, {platform.platform()}",
               "quick": QUICK, "repeats": REPEATS, "point_seconds": POINT_SECONDS,
               "children": CHILDREN, "users": {}}
    try:
        bench.start_deskphones()
        for count in USER_COUNTS:
            results["users"][str(count)] = measure_users(
                bench, workdir / str(count), Users(count), rates,
                with_ladder=not QUICK and count == USER_COUNTS[0],
                with_kemi=count == USER_COUNTS[0])
        results["rates"] = {k: rates[k] for k in ("calls", "register")}
        results["media"] = media_row(bench, workdir / "media", rates)
        results["metrics"] = metrics_row(bench, workdir / "metrics", rates)
        results["import"] = import_row(workdir / "import")
        results["api_auth"] = api_auth_row(workdir / "api-auth")
    finally:
        bench.stop()
    results["ratios"] = ratios(results)
    results["seconds"] = round(time.monotonic() - STARTED)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print(table(results))
    log(f"results in {RESULTS} ({results['seconds']} s); SIPp logs under {workdir}")
    shutil.rmtree(workdir / "100000", ignore_errors=True)   # the 100k users' files


if __name__ == "__main__":
    main()
