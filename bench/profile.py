"""Where U's Python time goes under the bench's call load (or REGISTER load): py-spy (PyPI,
`pip install py-spy`, not a dependency of the proxy) records every Kamailio process of U
(the SIP workers, the call-event process, the timers) while SIPp loads it, and this prints
the functions that hold most samples, inclusive and self. PROFILE_BASE=<revision>
profiles that revision instead of this tree (extracted as bench/side_by_side.py does), so
a change is read before and after. PROFILE_RATE (500), PROFILE_SECONDS (10),
PROFILE_WORKLOAD (calls or register), PROFILE_TOP (15)."""
import collections
import os
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import (LOAD_CPUS, Bench, UniqueAccountProxy, Users, log, pin,  # noqa: E402
                       warm_up)
from bench.side_by_side import extract  # noqa: E402

BASE = os.environ.get("PROFILE_BASE")
RATE = int(os.environ.get("PROFILE_RATE", "500"))
SECONDS = int(os.environ.get("PROFILE_SECONDS", "10"))
WORKLOAD = os.environ.get("PROFILE_WORKLOAD", "calls")
TOP = int(os.environ.get("PROFILE_TOP", "15"))
PY_SPY = Path(sys.executable).parent / "py-spy"


def record(pids, seconds, into):
    """py-spy's collapsed stacks of each process, sampled without stopping it."""
    procs = [subprocess.Popen([str(PY_SPY), "record", "--pid", str(pid), "--format", "raw",
                               "--rate", "100", "--duration", str(seconds), "--nonblocking",
                               "--output", str(into / f"{pid}.txt")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for pid in pids]
    for proc in procs:
        proc.wait()
    return [into / f"{pid}.txt" for pid in pids if (into / f"{pid}.txt").exists()]


def frame_name(frame):
    """`function (path:line)` -> `function (path)`: a function counted once, whatever line."""
    return re.sub(r":\d+\)$", ")", frame.strip())


def tops(files):
    inclusive, own, total = collections.Counter(), collections.Counter(), 0
    for path in files:
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack:
                continue
            frames = [frame_name(f) for f in stack.split(";")]
            total += int(count)
            own[frames[-1]] += int(count)
            for frame in set(frames):
                inclusive[frame] += int(count)
    return total, inclusive, own


def main():
    pin([os.getpid()], LOAD_CPUS)
    workdir = Path(tempfile.mkdtemp(prefix="ua-profile-"))
    users = Users(100)
    bench = Bench(workdir)
    root = extract(BASE, workdir / "base") if BASE else ROOT
    proxy = UniqueAccountProxy(workdir, users, root=root, name="U")
    try:
        bench.start_deskphones()
        proxy.start()
        bench.register_call_pool(proxy)
        warm_up(bench, proxy, RATE)
        pids = [p for p in proxy.kamailio_pids() if p != proxy.proc.pid]
        out = workdir / "py-spy"
        out.mkdir()
        files = []
        thread = threading.Thread(target=lambda: files.extend(record(pids, SECONDS, out)))
        thread.start()
        point = bench.measure(proxy, WORKLOAD, RATE, seconds=SECONDS)
        thread.join()
        log(f"{point['successful']} {WORKLOAD} measured, {point['failed']} failed, "
            f"{point['cpu_ms_per_op']:.3f} ms CPU each")
    finally:
        proxy.stop()
        bench.stop()
    total, inclusive, own = tops(files)
    print(f"py-spy, {WORKLOAD} at {RATE}/s for {SECONDS} s, "
          f"{BASE or 'this tree'}: {total} samples in {len(files)} processes")
    for title, counter in (("inclusive", inclusive), ("self", own)):
        print(f"\n| {title} | share | function |\n|---|---|---|")
        for frame, count in counter.most_common(TOP):
            print(f"| {count} | {count / total:.1%} | `{frame}` |")


if __name__ == "__main__":
    main()
