"""`make overload` (issue 23): how the proxy degrades past its sustainable call rate, against
N (bench/native.cfg, a native Kamailio without protection) under the same steps.

It reuses `make bench`'s pieces (bench/run.py): the proxies pinned to CPU 0 with their
Redis, SIPp to CPU 1, the users, SIPp playing the MDS and every deskphone. Per run:

1. the sustainable rate S: `make bench`'s ladder on U with steps of LADDER_SECONDS (10 s):
   the highest rate at which every call succeeds;
2. for U, then N: 1x, 1.5x, 2x and 3x S for STEP_SECONDS (60 s) each, the MDS playing
   sipp_scenarios/mds_call_overload.xml (a 503 ends a call apart, counted with SIPp's
   -trace_counts). Per step: goodput (successful calls per second), 503s, other failures
   (timeouts, aborts, unexpected answers), shared memory in use at its highest (sampled
   every SHM_SAMPLE_SECONDS through Kamailio's ctl socket), the proxy's CPU;
3. right when the 3x step stops offering calls, 1x again for RECOVERY_SECONDS, and the
   seconds until calls succeed again: the first second in which SIPp counts at least
   90 % of the calls offered as successful (that run plays mds_call_load, where a 503
   fails a call), and how many later seconds of the run fall below that again.

OVERLOAD_RUNS (2) runs; the report gives each figure's median over the runs. Results:
bench/overload.json and a table on stdout. Run it alone on the machine (flock).
"""
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import (MDS_IP, Bench, NativeProxy, UniqueAccountProxy, Users,  # noqa: E402
                       cpu_ns, injection_file, ladder, log, pin, LOAD_CPUS, sipp_command,
                       start_sipp)
from tests.support.processes import stop_process  # noqa: E402
from tests.support.sipp import free_port  # noqa: E402

RUNS = int(os.environ.get("OVERLOAD_RUNS", "2"))
STEP_SECONDS = int(os.environ.get("OVERLOAD_STEP_SECONDS", "60"))
RECOVERY_SECONDS = int(os.environ.get("OVERLOAD_RECOVERY_SECONDS", "20"))
LADDER_SECONDS = int(os.environ.get("OVERLOAD_LADDER_SECONDS", "10"))
LADDER_START = int(os.environ.get("OVERLOAD_LADDER_START", "400"))
MULTIPLES = (1, 1.5, 2, 3)
SHM_SAMPLE_SECONDS = 0.25
SETTLE_SECONDS = 15     # between steps: the previous step's failed calls time out (10 s)
USERS = Users(1000)
RESULTS = ROOT / "bench" / "overload.json"
SHED = "1_503_Recv"     # mds_call_overload's 503, in SIPp's -trace_counts file


def ctl_socket(proxy):
    if isinstance(proxy, UniqueAccountProxy):
        return proxy.workdir / "var" / "run" / proxy.name / "ctl.sock"
    return proxy.workdir / "ctl.sock"


def shm_fraction(proxy):
    """Kamailio's shared memory in use (real_used_size / total_size), through kamcmd."""
    out = subprocess.run(["kamcmd", "-s", f"unix:{ctl_socket(proxy)}", "stats.get_statistics",
                          "real_used_size", "total_size"],
                         capture_output=True, text=True, timeout=5).stdout
    values = dict(line.replace(" ", "").split("=") for line in out.splitlines() if "=" in line)
    return int(values["shmem:real_used_size"]) / int(values["shmem:total_size"])


class ShmSampler(threading.Thread):
    """The highest shared-memory fraction seen while it runs."""

    def __init__(self, proxy):
        super().__init__(daemon=True)
        self.proxy, self.highest, self.done = proxy, 0.0, threading.Event()

    def run(self):
        while not self.done.wait(SHM_SAMPLE_SECONDS):
            try:
                self.highest = max(self.highest, shm_fraction(self.proxy))
            except (OSError, KeyError, ValueError, subprocess.SubprocessError):
                pass    # a sample lost to a busy ctl process: the others still count

    def stop(self):
        self.done.set()
        self.join()
        return self.highest


def start_calls(workdir, proxy, rate, seconds, scenario="mds_call_overload"):
    """The MDS calls the call pool at `rate` for `seconds`."""
    inf = injection_file(workdir.with_suffix(".csv"), USERS.call_pool)
    cmd = sipp_command(scenario, MDS_IP, free_port(MDS_IP), proxy.addr, inf, rate,
                       int(rate * seconds))
    # counts per scenario line (the 503s); the recovery run: a row of figures every second
    # (the later -fd wins)
    cmd += ["-trace_counts"] if scenario == "mds_call_overload" else ["-fd", "1"]
    return start_sipp(cmd, workdir)


def rows(path):
    lines = path.read_text().splitlines()
    return [dict(zip(lines[0].split(";"), line.split(";"))) for line in lines[1:]]


def outcome(workdir):
    """(successful, 503s, other failures) of one SIPp run."""
    final = rows(workdir / "stat.csv")[-1]
    shed = int(rows(next(workdir.glob("*_counts.csv")))[-1][SHED])
    # a 503 ends its call at the end of the scenario: SIPp counts it successful
    return int(final["SuccessfulCall(C)"]) - shed, shed, int(final["FailedCall(C)"])


def recovery_seconds(workdir, rate):
    """(seconds from the start of the 1x run to the end of the first second in which at
    least 90 % of the offered calls succeed, or None; how many later seconds fall below
    that again). The run plays mds_call_load, where a 503 fails a call at once."""
    ok = [int(row["SuccessfulCall(P)"]) >= 0.9 * rate
          for row in rows(workdir / "stat.csv")[1:-1]]    # the first: at 0 s; the last: the tail
    if True not in ok:
        return None, 0
    first = ok.index(True)
    return first + 1, ok[first:].count(False)


def run_step(bench, proxy, rate, tag, recovery_rate=None):
    workdir = bench.run_dir(f"{proxy.name}-{tag}")
    sampler = ShmSampler(proxy)
    sampler.start()
    cpu_before, started = cpu_ns(proxy.pids()), time.monotonic()
    proc = start_calls(workdir, proxy, rate, STEP_SECONDS)
    recovery = None
    if recovery_rate:
        # the 3x load stops offering calls at STEP_SECONDS; 1x takes over at once
        time.sleep(max(0.0, started + STEP_SECONDS - time.monotonic()))
        recovery_dir = bench.run_dir(f"{proxy.name}-recovery")
        recovery = start_calls(recovery_dir, proxy, recovery_rate, RECOVERY_SECONDS,
                               scenario="mds_call_load")
    wait(proc, STEP_SECONDS + 40)
    cpu = (cpu_ns(proxy.pids()) - cpu_before) / 1e9 / (time.monotonic() - started)
    successful, shed, failed = outcome(workdir)
    result = {"rate": rate, "offered": int(rate * STEP_SECONDS),
              "goodput": round(successful / STEP_SECONDS, 1), "successful": successful,
              "rejected_503": shed, "other_failures": failed,
              "proxy_cpu_share": round(cpu, 2)}
    if recovery:
        wait(recovery, RECOVERY_SECONDS + 40)
        result["recovery_seconds"], result["recovery_seconds_below_later"] = \
            recovery_seconds(recovery_dir, recovery_rate)
        final = rows(recovery_dir / "stat.csv")[-1]
        result["recovery_run"] = {"successful": int(final["SuccessfulCall(C)"]),
                                  "failed": int(final["FailedCall(C)"])}
    result["shm_highest"] = round(sampler.stop(), 3)
    log(f"{proxy.name} {tag} {rate}/s: {result}")
    return result


def wait(proc, seconds):
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        pass
    finally:
        stop_process(proc)


def one_run(workdir, number):
    bench = Bench(workdir)
    proxies = [UniqueAccountProxy(workdir, USERS), NativeProxy(workdir, USERS)]
    out = {}
    try:
        bench.start_deskphones()
        for proxy in proxies:
            proxy.start()
            bench.register_call_pool(proxy)
        sustainable, limit = ladder(bench, proxies[0], "calls", LADDER_START,
                                    seconds=LADDER_SECONDS)
        log(f"run {number}: sustainable rate {sustainable}/s ({limit}-bound)")
        if not sustainable:
            raise SystemExit("overload: no rate where every call succeeds")
        out["sustainable"], out["limit"] = sustainable, limit
        for proxy in proxies:
            steps = out.setdefault(proxy.name, {})
            for multiple in MULTIPLES:
                time.sleep(SETTLE_SECONDS)
                rate = round(multiple * sustainable)
                steps[f"{multiple}x"] = run_step(
                    bench, proxy, rate, f"{multiple}x",
                    recovery_rate=sustainable if multiple == MULTIPLES[-1] else None)
    finally:
        for proxy in proxies:
            proxy.stop()
        bench.stop()
    return out


def median_of(runs, *path):
    values = []
    for run in runs:
        value = run
        for key in path:
            value = value[key]
        values.append(value)
    if any(v is None for v in values):
        return None
    return statistics.median(values)


def table(report):
    runs, s = report["runs"], report["sustainable_median"]
    lines = [f"make overload {report['date']} on {report['machine']}: {len(runs)} runs, "
             f"sustainable rate {', '.join(str(r['sustainable']) for r in runs)} calls/s "
             f"(median {s}), steps of {STEP_SECONDS} s; medians over the runs", "",
             "| proxy | offered | calls/s offered | goodput calls/s (of S) | 503s "
             "| other failures (of offered) | shm highest | proxy CPU | back at 1x after 3x |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name in ("U", "N"):
        for multiple in MULTIPLES:
            key = f"{multiple}x"
            m = lambda *p: median_of(runs, name, key, *p)     # noqa: E731
            offered, goodput = m("offered"), m("goodput")
            back = "-"
            if multiple == MULTIPLES[-1]:
                recovery, below = m("recovery_seconds"), m("recovery_seconds_below_later")
                back = ("never (in the 1x run)" if recovery is None else f"{recovery:g} s"
                        + (f" ({below:g} later seconds under 90 %)" if below else ""))
            lines.append(
                f"| {name} | {key} | {m('rate'):g} | {goodput:g} ({goodput / s:.0%}) "
                f"| {m('rejected_503'):g} | {m('other_failures'):g} "
                f"({m('other_failures') / offered:.2%}) | {m('shm_highest'):.1%} "
                f"| {m('proxy_cpu_share'):.0%} | {back} |")
    return "\n".join(lines)


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    pin([os.getpid()], LOAD_CPUS)
    workdir = Path(tempfile.mkdtemp(prefix="ua-overload-"))
    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "machine": f"{platform.node()}, {os.cpu_count()} CPUs, {platform.platform()}",
              "step_seconds": STEP_SECONDS, "runs": []}
    for number in range(1, RUNS + 1):
        report["runs"].append(one_run(workdir / str(number), number))
    report["sustainable_median"] = statistics.median(r["sustainable"] for r in report["runs"])
    report["seconds"] = round(time.monotonic() - STARTED)
    RESULTS.write_text(json.dumps(report, indent=1) + "\n")
    print(table(report))
    log(f"results in {RESULTS}; SIPp logs under {workdir}")


STARTED = time.monotonic()

if __name__ == "__main__":
    main()
