"""U of this tree against U of another revision (SIDE_BASE, default main), side by side:
what a change to the request path costs per call. Both run at once, with their own Redis,
pinned like `make bench` (proxies on CPU 0, SIPp on CPU 1), and are loaded in turns at
SIDE_RATE calls/s (980) for SIDE_POINTS points (7) of SIDE_SECONDS (4) each, after a
warm-up; CPU per call as bench/run.py measures it. SIDE_WORKLOAD=register: REGISTERs
(digest, a pool of users refreshing their binding) at SIDE_RATE instead of calls. The other revision is extracted with
`git archive` into a temporary directory and uses this tree's virtual environment."""
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import (LOAD_CPUS, Bench, UniqueAccountProxy, Users, log,  # noqa: E402
                       memory_report, pin, warm_up)

BASE = os.environ.get("SIDE_BASE", "main")
RATE = int(os.environ.get("SIDE_RATE", "980"))
POINTS = int(os.environ.get("SIDE_POINTS", "7"))
SECONDS = float(os.environ.get("SIDE_SECONDS", "4"))
WORKLOAD = os.environ.get("SIDE_WORKLOAD", "calls")


def extract(rev, into):
    into.mkdir()
    archive = subprocess.run(["git", "archive", rev], cwd=ROOT, check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    (into / ".venv").symlink_to(ROOT / ".venv")
    return into


def main():
    pin([os.getpid()], LOAD_CPUS)
    workdir = Path(tempfile.mkdtemp(prefix="ua-side-"))
    users = Users(100)
    bench = Bench(workdir)
    proxies = [UniqueAccountProxy(workdir, users, root=extract(BASE, workdir / "base"),
                                  name="U-base"),
               UniqueAccountProxy(workdir, users, name="U-this")]
    cpu = {p.name: [] for p in proxies}
    memory = {}
    try:
        bench.start_deskphones()
        for proxy in proxies:
            proxy.start()
            bench.register_call_pool(proxy)
            warm_up(bench, proxy, RATE)
        memory = {p.name: [memory_report(p)["private_kib_per_process"]] for p in proxies}
        for _ in range(POINTS):
            for proxy in proxies:
                point = bench.measure(proxy, WORKLOAD, RATE, seconds=SECONDS)
                cpu[proxy.name].append(point["cpu_ms_per_op"])
                log(f"{proxy.name}: {point['cpu_ms_per_op']:.3f} ms a {WORKLOAD}, "
                    f"{point['failed']} failed")
        for proxy in proxies:
            memory[proxy.name].append(memory_report(proxy)["private_kib_per_process"])
    finally:
        for proxy in proxies:
            proxy.stop()
        bench.stop()
    med = {name: statistics.median(values) for name, values in cpu.items()}
    for name, values in cpu.items():
        print(f"{name}: CPU ms per {WORKLOAD} at {RATE}/s, median {med[name]:.3f} "
              f"({min(values):.3f}-{max(values):.3f}) over {len(values)} points")
    print(f"U-this/U-base ({BASE}): {med['U-this'] / med['U-base']:.3f}")
    for name, (before, after) in memory.items():
        print(f"{name}: Kamailio private KiB per process {before} -> {after} over the points")


if __name__ == "__main__":
    main()
