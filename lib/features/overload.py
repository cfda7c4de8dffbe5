"""Overload protection (issue 23, contract section 11): when this node cannot keep up, new
out-of-dialog INVITEs, then REGISTERs, get 503 with Retry-After at once, so that the calls
already taken complete and shared memory never runs out.

Two signals of the node's own state, sampled by a timer process every SAMPLE_MS
(kamailio.cfg, `ksr_overload_timer`):

- the SIP workers' backlog: how full the UDP SIP listener's receive buffer is (bytes
  queued against its size, SO_MEMINFO). It is the work the workers have not got to yet,
  so it rises when they fall behind whatever made them slow (CPU, a slow Redis), and it
  stays near zero at any rate they keep up with. Transactions in progress, by contrast, grow with the ring time
  of healthy calls (30 calls/s ringing 30 s are 900), and the CPU load says nothing about
  whether requests wait. Past the knee the queue grows within milliseconds, long before
  SIP retransmissions (500 ms) multiply the load;
- shared memory in use: what runs out when transactions pile up (replies that never
  come, a slow downstream), whatever their cause.

Levels: NORMAL; CALLS (new INVITEs are shed) above a high mark; ALL (REGISTERs too)
above a higher one; back to NORMAL only once every signal is below its low mark
(hysteresis: shedding stops when the backlog is gone, not when it merely shrank).
The level lives in Kamailio's shared memory (htable TABLE), one integer every worker
reads per INVITE or REGISTER: no Redis, no transaction. The reason is also kept in a
file of the run directory (UA_RUN_DIR) for the health endpoint, whatever process serves
it (`status()`), and stays there HEALTH_HOLD_SECONDS after the shedding stops, so that
a node going in and out of overload within milliseconds reads as degraded.
"""
import os
import random
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

from lib import config

TABLE, LEVEL_KEY = "ua_overload", "level"      # htable (kamailio.cfg)
NORMAL, CALLS, ALL = 0, 1, 2
SAMPLE_MS = 20
HEALTH_HOLD_SECONDS = 5.0
STATUS_FILE = "overload"
LOG_EVERY_SECONDS = 10.0
# A REGISTER storm (a site's phones after a power cut) comes back spread over this window.
REGISTER_RETRY_AFTER = (10, 40)
SO_MEMINFO = getattr(socket, "SO_MEMINFO", 55)     # <linux/socket.h>


@dataclass(frozen=True)
class Marks:
    """High marks (CALLS, ALL) and low mark of each signal; 0 turns a signal off."""
    queue_calls: float      # fraction of the SIP receive buffer in use
    queue_all: float
    queue_low: float
    shm_calls: float        # fraction of shared memory in use
    shm_all: float
    shm_low: float


def marks(queue_percent, shm_percent):
    """`queue_percent` (UA_OVERLOAD_QUEUE_PERCENT) of the SIP listener's receive buffer (INVITEs shed above;
    REGISTERs halfway between that and a full buffer; shedding stops below an eighth) and
    `shm_percent` (UA_OVERLOAD_SHM_PERCENT) of shared memory (INVITEs above; REGISTERs above +10 points;
    stops below -10). Past the buffer, datagrams are dropped and come back as
    retransmissions, which is what shedding is there to avoid; below the mark, the buffer
    absorbs the workers' short stalls (kamailio.cfg's maxbuffer: 4 MB here, about 130 ms
    of work at 1000 calls/s before the CALLS mark, 250 ms before drops). At 25 %, make
    soak shed 339 calls of 470,400 at half the sustainable rate, in 4 stalls of a shared
    core."""
    queue, shm = queue_percent / 100, shm_percent / 100
    return Marks(queue, queue + (1 - queue) / 2, queue / 8, shm, min(shm + 0.1, 0.75),
                 max(shm - 0.1, 0))


def level(previous, queue, shm, m):
    """The level for these readings, given the previous one; its reason (None: normal)."""
    over = []
    for value, calls, every, unit in ((queue, m.queue_calls, m.queue_all, "queue"),
                                      (shm, m.shm_calls, m.shm_all, "shm")):
        if calls and value >= calls:
            over.append((ALL if value >= every else CALLS, describe(unit, value, calls)))
    if over:
        return max(over)
    lingering = [(unit, value, low) for value, low, on, unit in
                 ((queue, m.queue_low, m.queue_calls, "queue"),
                  (shm, m.shm_low, m.shm_calls, "shm"))
                 if on and value > low]
    if previous and lingering:
        unit, value, low = lingering[0]
        return previous, describe(unit, value, low, "low")
    return NORMAL, None


def describe(unit, value, mark, which="high"):
    what = "SIP receive buffer" if unit == "queue" else "shared memory"
    return f"{what} {value:.0%} in use ({which} mark {mark:.0%})"


def sheds(current, is_register):
    """Whether a new out-of-dialog INVITE (or REGISTER) is refused at this level."""
    return bool(current) and current >= (ALL if is_register else CALLS)


def retry_after(is_register, rand=random.randint):
    return rand(*REGISTER_RETRY_AFTER) if is_register else 1


def udp_local_address(ip, port):
    """The local_address column of /proc/net/udp(6) for a listener: the address in
    host-order 32-bit words as hex, then the port."""
    packed = socket.inet_pton(socket.AF_INET6 if ":" in ip else socket.AF_INET, ip)
    words = "".join(packed[i:i + 4][::-1].hex().upper() for i in range(0, len(packed), 4))
    return f"{words}:{port:04X}"


def udp_socket(proc_net_udp, local_address):
    """(rx_queue bytes, inode) of the socket bound to local_address in a /proc/net/udp
    text, or None."""
    for line in proc_net_udp.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 9 and fields[1] == local_address:
            return int(fields[4].split(":")[1], 16), fields[9]
    return None


def listener_socket(inode):
    """This process's own handle on the socket with that inode (a duplicate of its
    descriptor: Kamailio opens its UDP listeners before it forks, so every process, a
    timer process included, holds them), or None."""
    target = f"socket:[{inode}]"
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == target:
                return socket.socket(fileno=os.dup(int(fd)))
        except OSError:
            continue
    return None


def buffer_use(sock):
    """The fraction of the socket's receive buffer in use: SO_MEMINFO (Linux 4.12) starts
    with the bytes queued and the buffer's size. One system call, where reading
    /proc/net/udp walks the kernel's whole UDP table (0.37 ms a read here)."""
    queued, size = struct.unpack("=2I", sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, 8))
    return queued / size if size else 0.0


class Monitor:
    """The timer process's state: the current level, when to log, the status file."""

    def __init__(self, cfg, m=None):
        self.marks = m or marks(cfg.overload_queue_percent, cfg.overload_shm_percent)
        self.address = udp_local_address(cfg.listen, cfg.sip_port)
        self.proc_file = "/proc/net/udp6" if ":" in cfg.listen else "/proc/net/udp"
        self.status_path = Path(cfg.run_dir) / STATUS_FILE if cfg.run_dir else None
        self.level, self.logged = NORMAL, float("-inf")
        self.normal_since = None
        self.published = False      # the status file is there
        self.sock = None

    def queue(self):
        """The fraction of the listener's receive buffer in use (0 if it was not found:
        the socket is looked for once, in /proc/net/udp, then read with SO_MEMINFO)."""
        if self.sock is None:
            with open(self.proc_file) as f:
                found = udp_socket(f.read(), self.address)
            self.sock = (found and listener_socket(found[1])) or False
        return buffer_use(self.sock) if self.sock else 0.0

    def tick(self, shm, now):
        """One sample: returns (new level, reason, log line or None) when the level changed,
        else None."""
        queue = self.queue() if self.marks.queue_calls else 0
        new, reason = level(self.level, queue, shm, self.marks)
        self.hold_health(new, reason, now, changed=new != self.level)
        if new == self.level:
            return None
        line = None
        if new > self.level and now - self.logged >= LOG_EVERY_SECONDS:
            what = "INVITEs and REGISTERs" if new == ALL else "INVITEs"
            line = f"overload: shedding new {what}: {reason}"
            self.logged = now
        self.level = new
        return new, reason, line

    def hold_health(self, new, reason, now, changed):
        """The status file: written when shedding starts or changes level, removed once
        the node has been normal for HEALTH_HOLD_SECONDS."""
        if self.status_path is None:
            return
        if new:
            self.normal_since = None
            if changed:
                write_status(self.status_path, reason)
                self.published = True
        elif self.normal_since is None:
            self.normal_since = now
        elif self.published and now - self.normal_since >= HEALTH_HOLD_SECONDS:
            self.status_path.unlink(missing_ok=True)
            self.published = False


def write_status(path, reason):
    tmp = path.with_suffix(".tmp")
    tmp.write_text(reason)
    os.replace(tmp, path)


def status(run_dir=None):
    """None, or why this node sheds load now (or did within HEALTH_HOLD_SECONDS): for any
    health endpoint. The run directory is the runner's (UA_RUN_DIR)."""
    run_dir = run_dir or config.load().run_dir
    if not run_dir:
        return None
    try:
        return "overload: " + (Path(run_dir) / STATUS_FILE).read_text()
    except OSError:
        return None
