"""baresip (Debian's 1.0.0) as a real deskphone in tests: headless, its own config
directory, driven through its ctrl_tcp module (netstring-framed JSON commands, events
such as CALL_INCOMING / CALL_ESTABLISHED / CALL_CLOSED), stopped by its PID.

    phone = Baresip(workdir, "1000", "secret", registrar="127.0.0.1:5060", transport="udp")
    phone.start()                            # ready once baresip answers on ctrl_tcp
    phone.wait_registered()
    phone.wait_event("CALL_INCOMING"); phone.command("accept")
    phone.audio_stats()                      # {"tx": packets sent, "rx": packets received}
    phone.stop()

No sound card here: the source is `ausine` (a 440 Hz tone; it only makes 48 kHz stereo,
resampled by baresip to the codec) and the player an `aubridge` device nobody reads. RTP
is still received, decoded and counted. baresip's SIP trace (-s) goes to its log, so a
test can tell over which transport a request reached it (`trace`).
"""
import json
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

from tests.support.processes import stop_process
from tests.support.sipmessage import SipMessage
from tests.support.sipp import _port_in_use, free_port

BARESIP_IP = "127.0.0.60"
MODULES = ("g711", "ausine", "aubridge", "ctrl_tcp")
# One message of baresip's SIP trace (-s): "<cyan>#\n<PROTO> <from> -> <to>\n<message>\n<reset>"
_TRACE = re.compile(r"\x1b\[36;1m#\n(UDP|TCP|TLS) (\S+) -> (\S+)\n(.*?)\x1b\[;m", re.S)


def baresip_binary():
    path = shutil.which("baresip")
    if path is None:
        raise RuntimeError("baresip is not installed: `make setup` installs the Debian "
                           "package baresip (scripts/setup.sh)")
    return path


def _sip_port(ip):
    """A SIP port for baresip: UDP and TCP free, and TCP free on the next one, where
    baresip 1.0 listens for TLS."""
    for _ in range(50):
        port = free_port(ip)
        if port < 65535 and not _port_in_use(ip, port + 1, "tcp"):
            return port
    raise RuntimeError(f"no free port pair for baresip on {ip}")


class Baresip:
    def __init__(self, workdir, user, password, registrar, transport="udp", ip=BARESIP_IP,
                 cafile=None, regint=600, answermode="manual"):
        self.binary = baresip_binary()
        self.dir = Path(workdir) / f"baresip-{user}-{transport}-{ip}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.user, self.password, self.transport = user, password, transport
        self.registrar, self.ip, self.cafile, self.regint = registrar, ip, cafile, regint
        # `auto`: baresip answers by itself (Debian's 1.0 ignores the auto-answer headers)
        self.answermode = answermode
        self.aor = f"sip:{user}@{registrar}"
        self.sip_port = _sip_port(ip)
        self.ctrl_port = free_port(ip)
        self.log_path = self.dir / "baresip.log"
        self.proc = None
        self.events = []
        self._responses = {}
        self._tokens = iter(range(1, 1 << 30))
        self._cond = threading.Condition()
        self._sock = None

    def _write_config(self):
        lines = [
            "poll_method epoll",
            # SIP and the media address: the SDP says 127.0.0.60, not the host's eth0.
            f"sip_listen {self.ip}:{self.sip_port}",
            f"net_interface {self.ip}",
            "audio_source ausine,440", "ausrc_srate 48000", "ausrc_channels 2",
            "audio_player aubridge,nowhere", "audio_alert aubridge,nowhere",
            "rtp_stats yes",
            "module_path /usr/lib/baresip/modules",
            *(f"module {name}.so" for name in MODULES),
            "module_tmp account.so",
            "module_app menu.so",           # the call commands: dial, accept, hangup...
            f"ctrl_tcp_listen {self.ip}:{self.ctrl_port}",
        ]
        if self.cafile:
            lines.append(f"sip_cafile {self.cafile}")
        (self.dir / "config").write_text("\n".join(lines) + "\n")
        (self.dir / "accounts").write_text(
            f"<{self.aor};transport={self.transport}>;auth_pass={self.password};"
            # its registrar is its outbound proxy too, as a provisioned deskphone's
            f"outbound=\"sip:{self.registrar};transport={self.transport}\";"
            f"answermode={self.answermode};regint={self.regint}\n")
        (self.dir / "contacts").write_text("")

    def start(self, timeout=10):
        self._write_config()
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.binary, "-f", str(self.dir), "-s"],
                                     stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while self._sock is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"baresip did not start:\n{self.log_tail()}")
            try:
                self._sock = socket.create_connection((self.ip, self.ctrl_port), timeout=1)
            except OSError:
                time.sleep(0.05)
        self._sock.settimeout(None)
        threading.Thread(target=self._read_loop, daemon=True,
                         name=f"baresip-{self.user}").start()
        return self

    def stop(self):
        """baresip un-registers on SIGTERM; killed if it has not ended in 5 s."""
        stop_process(self.proc, grace=5)
        if self._sock:
            self._sock.close()
            self._sock = None
        self.proc = None

    def log_tail(self, lines=40):
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # ---- ctrl_tcp: netstrings "<len>:<json>,"

    def _read_loop(self):
        buf = b""
        while True:
            try:
                data = self._sock.recv(65536)
            except (OSError, AttributeError):
                data = b""
            if not data:
                return
            buf += data
            while b":" in buf:
                length, _, rest = buf.partition(b":")
                if len(rest) < int(length) + 1:
                    break
                message, buf = json.loads(rest[:int(length)]), rest[int(length) + 1:]
                with self._cond:
                    if message.get("event"):
                        message["at"] = time.time()      # comparable with SIPp timestamps
                        self.events.append(message)
                    elif "token" in message:
                        self._responses[message["token"]] = message
                    self._cond.notify_all()

    def _wait(self, pick, timeout, what):
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = pick()
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"baresip {self.user}: no {what} within {timeout} s; "
                                       f"events {[e['type'] for e in self.events]}\n"
                                       f"{self.log_tail(15)}")
                self._cond.wait(left)

    def command(self, name, params=None, timeout=5):
        """Run one command; returns its response's text (AssertionError if not ok)."""
        token = str(next(self._tokens))
        message = {"command": name, "token": token}
        if params is not None:
            message["params"] = params
        data = json.dumps(message).encode()
        self._sock.sendall(b"%d:%s," % (len(data), data))
        response = self._wait(lambda: self._responses.pop(token, None), timeout,
                              f"response to {name}")
        assert response.get("ok"), response
        return response.get("data", "")

    def wait_event(self, kind, timeout=5, after=0):
        """The first event of this type, from the `after`-th event on."""
        return self._wait(lambda: next((e for e in self.events[after:] if e["type"] == kind),
                                       None), timeout, kind)

    def event_types(self):
        with self._cond:
            return [e["type"] for e in self.events]

    def registered(self):
        # reginfo colours the state: "\x1b[32mOK \x1b[;m"
        return "OK" in re.sub(r"\x1b\[[0-9;]*m", "", self.command("reginfo"))

    def wait_registered(self, timeout=5):
        deadline = time.monotonic() + timeout
        while not self.registered():
            if time.monotonic() > deadline:
                raise TimeoutError(f"baresip {self.user} not registered:\n{self.log_tail()}")
            time.sleep(0.05)

    def audio_stats(self):
        """RTP packets of the current call: {"tx": sent, "rx": received}, from
        `audio_debug` (its RTCP session: "TX: packets=N" and the peer's "rcvd=N", a line
        that appears with the peer's first packet)."""
        text = self.command("audio_debug")
        tx = re.search(r"TX: packets=(\d+)", text)
        rx = re.search(r"rcvd=(\d+)", text)
        assert tx, text
        return {"tx": int(tx.group(1)), "rx": int(rx.group(1)) if rx else 0}

    def trace(self):
        """[(transport, source, destination, SipMessage)] of every SIP message in the log."""
        text = self.log_path.read_text(errors="replace")
        return [(proto, src, dst, SipMessage(body.removesuffix("\n")))
                for proto, src, dst, body in _TRACE.findall(text)]

    def received(self, method):
        """(transport, SipMessage) of each request `method` baresip received from its
        registrar (over TLS, the connection baresip opened has an ephemeral port)."""
        return [(proto, msg) for proto, src, dst, msg in self.trace()
                if src == self.registrar and msg.method == method]
