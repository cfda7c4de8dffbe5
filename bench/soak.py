"""`make soak` (issue 9): the proxy under a steady load for a long time, to show it neither
fails calls nor grows. It reuses `make bench`'s pieces (bench/run.py): the proxy started
as `make run` starts it with its embedded Redis, the users, SIPp playing the MDS and every
deskphone.

For SOAK_SECONDS (default 600): the MDS calls the call pool at SOAK_CALL_RATE per second
(default: half the sustainable rate measured on this machine at the start, by `make
bench`'s ladder on the soak's own proxy with steps of SOAK_LADDER_SECONDS; never a figure
from another machine: issue 23), the register
pool re-registers at a fifth of that, and every SOAK_SWITCH_SECONDS (3) a user of the
call pool switches device through the API (webrtc, with its fallback to the deskphone,
and back). Reported, and written to bench/soak.json: failed calls and REGISTERs (goal 0),
failed device switches, RSS and private memory of every Kamailio process after a warm-up (a tenth
of the time, at most 30 s) and at the end (goal: flat), Redis memory at the same times,
and Python exceptions in the Kamailio log (goal 0). And what tells a failure's cause:
each SIPp's own stalls and aborted calls by cause, the datagrams dropped at each UDP
socket, tm's reply counts, and a memory series (every SAMPLE_SECONDS) that tells a slope
from a step.
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.overload import ctl_socket, shm_fraction  # noqa: E402
from bench.run import (MDS_IP, REGISTRAR_IP, Bench, UniqueAccountProxy, Users,  # noqa: E402
                       free_port, ladder, log, memory_kib, read_result, start_load)

SECONDS = int(os.environ.get("SOAK_SECONDS", "600"))
SAMPLE_SECONDS = 30         # the memory series: one reading this often
SWITCH_SECONDS = float(os.environ.get("SOAK_SWITCH_SECONDS", "3"))
LADDER_SECONDS = int(os.environ.get("SOAK_LADDER_SECONDS", "5"))
# low enough that the first step passes on a busy machine too (a failed first step leaves
# no rate at all)
LADDER_START = int(os.environ.get("SOAK_LADDER_START", "100"))
USERS = Users(int(os.environ.get("SOAK_USERS", "1000")))
OUT = Path(__file__).resolve().parent / "soak.json"
TRACEBACK = b"ua: Traceback"       # what kemi/entry.py logs for any escaped exception


def measured_call_rate(bench, proxy):
    """Half the highest rate at which every call succeeds, on this machine, now."""
    highest, limit = ladder(bench, proxy, "calls", LADDER_START, seconds=LADDER_SECONDS)
    log(f"soak: sustainable rate {highest}/s ({limit}-bound)")
    if not highest:
        raise SystemExit("soak: no rate where every call succeeds")
    return highest // 2


def kamailio_memory(proxy):
    """{pid: (RSS KiB, private KiB)} of every Kamailio process of the proxy."""
    return {pid: memory_kib(pid) for pid in proxy.kamailio_pids()
            if Path(f"/proc/{pid}/comm").read_text().strip() == "kamailio"}


def sipp_errors(directory):
    """What a SIPp's error log says: its own stalls (its watchdog trips when its main loop
    ran more than 500 ms late: the load generator, not the proxy, was held up) and the
    calls it aborted, by what it expected and what came instead."""
    stalls, aborted = 0, {}
    for path in Path(directory).glob("*_errors.log"):
        text = path.read_bytes().decode("latin-1")
        stalls += text.count("watchdog timer")
        for expected, got in re.findall(r"while (expecting '\w+'|sending) \(index \d+\), "
                                        r"received '(SIP/2\.0 \d+|\w+)", text):
            key = f"{expected} got {got}"
            aborted[key] = aborted.get(key, 0) + 1
    return {"stalls": stalls, "aborted": aborted}


def udp_drops(ports):
    """{port: datagrams the kernel dropped at that UDP socket's full receive buffer}
    (/proc/net/udp's last column), for the sockets bound to these ports (each on its own
    loopback address: the proxy's, the MDS's, the deskphones', the registrar load's)."""
    drops = {}
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        port = int(fields[1].split(":")[1], 16)
        if port in ports:
            drops[port] = drops.get(port, 0) + int(fields[-1])
    return drops


def tm_replies(proxy):
    """tm's counts of final replies by class, and of the ones it made itself (408s of
    timed-out branches among them): kamcmd tm.stats."""
    out = subprocess.run(["kamcmd", "-s", f"unix:{ctl_socket(proxy)}", "tm.stats"],
                         capture_output=True, text=True, timeout=5).stdout
    return {k.strip(): int(v) for k, _, v in (line.partition(":") for line in out.splitlines())
            if v.strip().isdigit()}


def switch_device(api, number, device):
    req = urllib.request.Request(f"{api}/users/{number}/device", method="PUT",
                                 data=json.dumps({"device": device}).encode(),
                                 headers={"Authorization": "Bearer bench",
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status == 200
    except OSError:
        return False


def main():
    workdir = Path(tempfile.mkdtemp(prefix="ua-soak-"))
    bench = Bench(workdir)
    proxy = UniqueAccountProxy(workdir, USERS)
    try:
        bench.start_deskphones()
        proxy.start()
        bench.register_call_pool(proxy)
        rate = int(os.environ.get("SOAK_CALL_RATE", "0")) or measured_call_rate(bench, proxy)
        register_rate = max(1, rate // 5)
        report = {"seconds": SECONDS, "call_rate": rate, "register_rate": register_rate,
                  "users": USERS.count}
        api = proxy.api_url
        log(f"soak: {SECONDS} s, calls at {rate}/s, REGISTER at {register_rate}/s, "
            f"a device switch every {SWITCH_SECONDS} s; logs under {workdir}")
        loads = {
            "calls": ("mds_call_load", MDS_IP, USERS.call_pool, rate, {}),
            "registers": ("register_load", REGISTRAR_IP, USERS.register_pool, register_rate,
                          {"contact_host": f"{REGISTRAR_IP}:5060"})}
        ports = {"proxy": proxy.port, "deskphones": bench.uas_port,
                 **{name: free_port(ip) for name, (_, ip, *_) in loads.items()}}
        drops_start, tm_start = udp_drops(set(ports.values())), tm_replies(proxy)
        procs = {name: start_load(workdir, name, scenario, ip, proxy.addr, numbers, r,
                                  r * SECONDS, keys, local_port=ports[name])
                 for name, (scenario, ip, numbers, r, keys) in loads.items()}
        switches = failed_switches = 0
        started = time.monotonic()
        deadline, warm_at = started + SECONDS, started + min(30, SECONDS / 10)
        memory_start, series, next_sample = None, [], started
        while time.monotonic() < deadline and all(p.poll() is None for p in procs.values()):
            if memory_start is None and time.monotonic() >= warm_at:
                # after a warm-up: the workers' first calls load code and touch memory
                memory_start, redis_start = kamailio_memory(proxy), proxy.redis_memory()
                shm_start = shm_fraction(proxy)
            elif memory_start is not None:
                shm_end = shm_fraction(proxy)    # the last reading under load
            if time.monotonic() >= next_sample:
                # whether memory grows all along (a leak) or levels off (caches filling,
                # allocators keeping what a burst made them take)
                series.append({"s": round(time.monotonic() - started),
                               "private_kib": sum(v[1] for v in kamailio_memory(proxy).values()),
                               "shm": round(shm_fraction(proxy), 4)})
                next_sample += SAMPLE_SECONDS
            number = USERS.call_pool[switches % len(USERS.call_pool)]
            device = "deskphone" if switches % 2 else "webrtc"
            failed_switches += not switch_device(api, number, device)
            switches += 1
            time.sleep(SWITCH_SECONDS)
        for proc in procs.values():
            proc.wait(60)
        memory_end, redis_end = kamailio_memory(proxy), proxy.redis_memory()
        drops_end, tm_end = udp_drops(set(ports.values())), tm_replies(proxy)
        results = {name: read_result(workdir / name) for name in procs}
    finally:
        proxy.stop()
        bench.stop()
    exceptions = (workdir / "U" / "proxy.log").read_bytes().count(TRACEBACK)
    report.update({
        "calls": {"successful": results["calls"].successful, "failed": results["calls"].failed},
        "registers": {"successful": results["registers"].successful,
                      "failed": results["registers"].failed},
        "device_switches": {"done": switches, "failed": failed_switches},
        "kamailio_kib": {str(pid): {"start": {"rss": memory_start[pid][0],
                                              "private": memory_start[pid][1]},
                                    "end": {"rss": memory_end[pid][0], "private": memory_end[pid][1]}}
                         for pid in sorted(memory_start) if pid in memory_end},
        "kamailio_private_total_kib": {"start": sum(v[1] for v in memory_start.values()),
                                   "end": sum(v[1] for v in memory_end.values())},
        "redis_used_memory": {"start": redis_start, "end": redis_end},
        "kamailio_shm_in_use": {"start": round(shm_start, 4), "end": round(shm_end, 4)},
        "python_exceptions": exceptions,
        "udp_drops": {name: drops_end.get(port, 0) - drops_start.get(port, 0)
                      for name, port in ports.items()},
        "tm_replies": {k: v - tm_start.get(k, 0) for k, v in tm_end.items()},
        "sipp": {name: sipp_errors(directory) for name, directory in
                 (("calls", workdir / "calls"), ("registers", workdir / "registers"),
                  ("deskphones", bench.uas_dir))},
        "memory_series": series})
    OUT.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "kamailio_kib"}, indent=1))
    print("Kamailio processes (KiB): pid  RSS start -> end  private start -> end")
    for pid, m in report["kamailio_kib"].items():
        print(f"  {pid}  {m['start']['rss']} -> {m['end']['rss']}  "
              f"{m['start']['private']} -> {m['end']['private']}")
    log(f"figures in {OUT}; SIPp logs under {workdir}")
    ok = (report["calls"]["failed"] == 0 and report["registers"]["failed"] == 0
          and exceptions == 0 and failed_switches == 0)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
