"""Run the SIPp scenarios of sipp_scenarios/ from tests, and read what they exchanged.

Standard library only.

    from tests.support.sipp import Sipp, free_port

    mds = Sipp(scenario="mds_call", remote="127.0.0.1:5060", local_ip="127.0.0.10",
               local_port=free_port("127.0.0.10"), keys={"service": "1000"},
               workdir=tmp_path, timeout=10)
    result = mds.run()                    # blocking
    assert result.ok, result.describe()
    assert result.received(200)

    phone = Sipp(scenario="deskphone_answer", local_ip="127.0.0.20", local_port=port,
                 workdir=tmp_path, timeout=20)
    with phone.start() as bg:             # background UAS, ready when start() returns
        ...                               # place the call
        bg.wait_for("INVITE", timeout=5)  # block until it rang
        result = bg.wait(10)              # or bg.stop(): SIGTERM by PID, keeps messages
    invite = result.received("INVITE")[0]
    invite.ruri, invite.header("P-Asserted-Identity"), invite.body

Exit codes of SIPp 3.6.1 (result.returncode):
    0   every call succeeded (also after SIGTERM: look at result.stopped)
    1   at least one call failed (unexpected final answer, timeout inside the scenario)
    97  "exit on internal command": our UAS scenarios stop themselves after
        `calls` INVITE calls (int_cmd stop_now); result.ok counts it as success
    99  normal exit without any call processed
    255 fatal error (bad scenario, unknown keyword, address in use...): see .stderr
result.ok is True for 0 and 97 when the wrapper did not have to kill SIPp (timed_out).

Transports: "u1" (UDP), "t1" (TCP), "l1" (TLS). Debian's SIPp 3.6.1 is built without
TLS (`sipp -h` offers no l1), so for "l1" SIPp runs over TCP on a hidden port and
TlsRelay (threads of this process, stdlib ssl) plays the TLS endpoint at
local_ip:local_port: it listens for TLS there (the proxy reaching the phone's Contact)
and carries SIPp's own connection to `remote` over TLS from that same port. What SIPp
sends is rewritten with same-length edits (Content-Length unchanged): Via
`SIP/2.0/TCP` -> `TLS`, `;transport=TCP` -> `TLS`, SIPp's port -> local_port. The
proxy thus sees a TLS phone whose Via, Contact and source port agree. Messages SIPp
logged as sent are reported as they went on the wire. A SIPp built with TLS is used
natively instead, with a throwaway self-signed pair made by openssl in the workdir.

Keep-alives: UAS scenarios answer OPTIONS/NOTIFY/INFO/... that start a dialog of their
own (the proxy's MDS probes, an unsolicited MWI NOTIFY) with 200; they don't count as
calls, so stop() such a UAS and look at result.received("NOTIFY").

Message waiting: mds_mwi_notify (UAC, unsolicited NOTIFY to [service], 200 expected),
deskphone_subscribe_mwi (UAC, SUBSCRIBE with digest, then answers the NOTIFY),
mds_mwi_subscription (UAS: 200 to the SUBSCRIBE with Expires [expires], in-dialog
NOTIFY; one subscription counts as one call for `calls`).

Self-test without a proxy (SIPp to SIPp on loopback, TLS relay to TLS relay):
    .venv/bin/python -m tests.support.sipp
"""

from __future__ import annotations

import datetime
import errno
import os
import re
import select
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from typing import Iterable

from lib.tools.runner import rtp_range
from tests.support.sipmessage import SipMessage

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCENARIO_DIR = os.path.join(REPO_ROOT, "sipp_scenarios")
SIPP_BIN = os.environ.get("SIPP_BIN", "sipp")

# Defaults for every key a scenario may use (SIPp refuses an unknown [keyword],
# and ignores -key values a scenario does not use).
DEFAULT_KEYS = {
    "user": "1000",
    "password": "password",
    "service": "1000",
    "caller": "mds",
    "expires": "3600",
    "contact_params": "",
    "extra_headers": "",
    "rtp_port": "40000",
    "sdp_proto": "RTP/AVP",
    "code": "486",
    "reason": "Busy Here",
    "user_agent": "sipp-tests",
}
# Defaults for the scenarios' global variables (-set); only those a scenario
# declares with <Global variables="..."/> are passed.
DEFAULT_VARIABLES = {
    "ring_ms": "0",
    "talk_ms": "500",
    "hold_ms": "3600000",
}

# ----------------------------------------------------------------------------
# ports


_given_ports: set[tuple[str, int]] = set()
_ports_lock = threading.Lock()


RTP_PORTS = rtp_range({})     # the embedded rtpengine's default media range


def free_port(ip: str = "127.0.0.1", kind: str = "udp") -> int:
    """A port free for both UDP and TCP on `ip` (kind is accepted for readability:
    both are always checked, so the port serves either transport). Ports already
    handed out by this process are not handed out again, which is why every port of
    the tests (proxy, Redis, SIPp) comes from here."""
    if kind not in ("udp", "tcp", "both"):
        raise ValueError(f"kind must be udp, tcp or both, not {kind!r}")
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind((ip, 0))
            port = t.getsockname()[1]
            if RTP_PORTS[0] <= port <= RTP_PORTS[1]:
                continue        # an embedded rtpengine's media could take it (lib/tools/runner)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind((ip, port))
                except OSError:
                    continue
        with _ports_lock:
            if (ip, port) in _given_ports:
                continue
            _given_ports.add((ip, port))
        return port
    raise RuntimeError(f"no port free for both UDP and TCP on {ip}")


def _port_in_use(ip: str, port: int, kind: str) -> bool:
    """Whether something is bound to ip:port (a bind attempt: sends nothing)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
    try:
        s.bind((ip, port))
        return False
    except OSError as e:
        return e.errno == errno.EADDRINUSE
    finally:
        s.close()


# ----------------------------------------------------------------------------
# SIP messages


class SippMessage(SipMessage):
    """A SIP message from a SIPp message log: .direction is "sent" or "received",
    .transport "UDP"/"TCP"/"TLS", .timestamp as SIPp logged it. Parsed leniently, so
    that an entry read while SIPp is still writing it is kept as far as it goes."""

    def __init__(self, raw: str, direction: str = "", transport: str = "", timestamp: str = ""):
        super().__init__(raw, strict=False)
        self.direction = direction
        self.transport = transport
        self.timestamp = timestamp


    @property
    def epoch(self) -> float:
        """Seconds since the epoch when SIPp logged it (its stamp is local date and time)."""
        return datetime.datetime.strptime(self.timestamp, "%Y-%m-%d %H:%M:%S.%f").timestamp()

    def summary(self) -> str:
        arrow = {"sent": "->", "received": "<-"}.get(self.direction, "  ")
        if self.is_response:
            what = f"{self.status} {self.reason} ({self.cseq_method})"
        else:
            what = f"{self.method} {self.ruri}"
        return f"{arrow} {self.transport or '?'} {what}"

    def __repr__(self) -> str:
        return f"<SippMessage {self.summary()} call-id={self.call_id}>"


_LOG_SEP = re.compile(rb"^-{47} (?P<ts>[^\n]*)\n", re.M)
_LOG_HEAD = re.compile(
    rb"(?P<transport>\w+) (?:control )?message (?P<dir>received|sent) "
    rb"(?:\[(?P<n1>\d+)\] bytes :|\((?P<n2>\d+) bytes\):)\n\n")


def parse_message_log(data: bytes | str) -> list[SippMessage]:
    """Parse a SIPp -trace_msg file into SippMessage objects (partial last entries
    are kept as far as they go)."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    out: list[SippMessage] = []
    seps = list(_LOG_SEP.finditer(data))
    for i, sep in enumerate(seps):
        end = seps[i + 1].start() if i + 1 < len(seps) else len(data)
        chunk = data[sep.end():end]
        m = _LOG_HEAD.match(chunk)
        if not m:
            continue  # other TRACE_MSG lines ("Discarded message ...")
        n = int(m.group("n1") or m.group("n2"))
        raw = chunk[m.end():m.end() + n]
        text = raw.decode("utf-8", "replace")
        if not text.strip():
            continue
        out.append(SippMessage(text, direction=m.group("dir").decode(),
                              transport=m.group("transport").decode(),
                              timestamp=sep.group("ts").decode().strip()))
    return out


def _matches(msg: SippMessage, what) -> bool:
    if what is None:
        return True
    if isinstance(what, int):
        return msg.status == what
    if callable(what):
        return bool(what(msg))
    w = str(what).upper()
    if w.isdigit():
        return msg.status == int(w)
    return msg.method == w


# ----------------------------------------------------------------------------
# results


class SippError(AssertionError):
    pass


class SippResult:
    """What a SIPp run left: returncode, stdout, stderr, error_log (text of
    -trace_err), messages (parsed message log, in order), command, timed_out
    (the wrapper had to kill it at its deadline), stopped (stop() was called)."""

    def __init__(self, *, scenario, command, returncode, stdout, stderr, error_log,
                 messages, timed_out=False, stopped=False, workdir="", message_file=""):
        self.scenario = scenario
        self.command = command
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.error_log = error_log
        self.messages = messages
        self.timed_out = timed_out
        self.stopped = stopped
        self.workdir = workdir
        self.message_file = message_file

    @property
    def ok(self) -> bool:
        return (not self.timed_out) and self.returncode in (0, 97)

    @property
    def ok_or_stopped(self) -> bool:
        """ok, or stopped by stop() (SIPp exits 0 on SIGTERM whatever happened)."""
        return self.ok or self.stopped

    def received(self, what=None) -> list[SippMessage]:
        """Received messages: requests by method ("INVITE"), responses by code (200),
        or a predicate; None: all."""
        return [m for m in self.messages if m.direction == "received" and _matches(m, what)]

    def sent(self, what=None) -> list[SippMessage]:
        return [m for m in self.messages if m.direction == "sent" and _matches(m, what)]

    def received_responses(self) -> list[SippMessage]:
        return [m for m in self.received() if m.is_response]

    def received_requests(self) -> list[SippMessage]:
        return [m for m in self.received() if m.is_request]

    def final_responses(self, method: str | None = None) -> list[SippMessage]:
        """Received final (>= 200) responses, optionally to requests of `method`."""
        return [m for m in self.received()
                if m.is_response and m.status >= 200
                and (method is None or m.cseq_method == method.upper())]

    def last_final(self, method: str | None = None) -> SippMessage | None:
        finals = self.final_responses(method)
        return finals[-1] if finals else None

    def codes(self) -> list[int]:
        """Status codes received, in order."""
        return [m.status for m in self.received() if m.is_response]

    def flow(self) -> str:
        return "\n".join(m.summary() for m in self.messages)

    def describe(self) -> str:
        lines = [f"sipp {self.scenario}: returncode={self.returncode}"
                 f"{' TIMED OUT' if self.timed_out else ''}"
                 f"{' (stopped)' if self.stopped else ''}",
                 "command: " + " ".join(_shell_quote(a) for a in self.command),
                 "messages:", self.flow() or "  (none)"]
        if self.stderr.strip():
            lines += ["stderr:", _tail(self.stderr)]
        if self.error_log.strip():
            lines += ["error log:", _tail(self.error_log)]
        if self.workdir:
            lines.append(f"files in {self.workdir}")
        return "\n".join(lines)

    def check(self) -> "SippResult":
        """Raise SippError (readable) unless ok; returns self."""
        if not self.ok:
            raise SippError(self.describe())
        return self

    def __repr__(self) -> str:
        return (f"<SippResult {self.scenario} rc={self.returncode} ok={self.ok} "
                f"messages={len(self.messages)}>")


def _tail(text: str, limit: int = 4000) -> str:
    text = text.strip()
    return text if len(text) <= limit else "...\n" + text[-limit:]


def _shell_quote(arg: str) -> str:
    if arg and re.fullmatch(r"[\w@%+=:,./-]+", arg):
        return arg
    return "'" + arg.replace("'", "'\\''").replace("\r\n", "\\r\\n") + "'"


# ----------------------------------------------------------------------------
# TLS


_tls_support: bool | None = None


def sipp_has_tls(sipp_bin: str | None = None) -> bool:
    """Whether this SIPp was built with TLS (offers -t l1)."""
    global _tls_support
    if _tls_support is None or sipp_bin:
        try:
            out = subprocess.run([sipp_bin or SIPP_BIN, "-h"], capture_output=True,
                                 text=True, timeout=10)
            text = out.stdout + out.stderr
        except (OSError, subprocess.TimeoutExpired):
            text = ""
        has = bool(re.search(r"^\s*-\s*l1\s*:", text, re.M)) or "-tls_cert" in text
        if sipp_bin:
            return has
        _tls_support = has
    return _tls_support


def make_self_signed(directory: str, name: str = "sipp") -> tuple[str, str]:
    """A throwaway self-signed certificate and key (openssl), returns their paths."""
    cert = os.path.join(directory, f"{name}-cert.pem")
    key = os.path.join(directory, f"{name}-key.pem")
    if not (os.path.exists(cert) and os.path.exists(key)):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=sipp-test"],
                       check=True, capture_output=True, timeout=60)
    return cert, key


_VIA_TCP = re.compile(rb"^((?:via|v)[ \t]*:[ \t]*SIP[ \t]*/[ \t]*2\.0[ \t]*/[ \t]*)TCP", re.I | re.M)
_TRANSPORT_TCP = re.compile(rb"(;[ \t]*transport=)tcp\b", re.I)


def _tcp_to_tls(head: bytes, swap: tuple[bytes, bytes] | None = None) -> bytes:
    """Same-length rewrite of a header section: Via SIP/2.0/TCP -> TLS,
    ;transport=tcp -> ;transport=tls (case kept), and swap=(b"ip:P", b"ip:Q") (SIPp's
    own port to the relay's TLS port, same number of digits)."""
    head = _VIA_TCP.sub(lambda m: m.group(1) + b"TLS", head)

    def tr(m):
        old = m.group(0)[len(m.group(1)):]
        return m.group(1) + (b"TLS" if old.isupper() else b"tls")
    head = _TRANSPORT_TCP.sub(tr, head)
    if swap:
        head = re.sub(re.escape(swap[0]) + rb"(?!\d)", swap[1], head)
    return head


class _SipStreamRewriter:
    """Frames a SIP-over-TCP byte stream into messages and rewrites their headers."""

    def __init__(self, swap):
        self.buf = b""
        self.swap = swap

    def feed(self, data: bytes) -> bytes:
        self.buf += data
        out = b""
        while True:
            stripped = self.buf.lstrip(b"\r\n")
            if len(stripped) != len(self.buf):  # keep-alive CRLFs pass as they are
                out += self.buf[:len(self.buf) - len(stripped)]
                self.buf = stripped
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return out
            head = self.buf[:end + 4]
            m = re.search(rb"^(?:content-length|l)[ \t]*:[ \t]*(\d+)", head, re.I | re.M)
            length = int(m.group(1)) if m else 0
            if len(self.buf) < end + 4 + length:
                return out
            body = self.buf[end + 4:end + 4 + length]
            self.buf = self.buf[end + 4 + length:]
            out += _tcp_to_tls(head, self.swap) + body


class TlsRelay:
    """Makes a TCP-only SIPp a TLS endpoint at local_ip:tls_port.

    SIPp runs over TCP on local_ip:sipp_port. The relay
    - listens for TLS on local_ip:tls_port: each connection (the proxy reaching the
      phone's Contact) is relayed to SIPp's TCP port;
    - listens for TCP on local_ip:<relay.port> (SIPp's -rsa): SIPp's connection is
      relayed to `remote` over TLS, from local_ip:tls_port when the kernel allows it.
    What SIPp sends is rewritten (same length): Via TCP -> TLS, ;transport=TCP -> TLS,
    local_ip:sipp_port -> local_ip:tls_port. So Via, Contact and the source port all
    say tls_port, like a real TLS phone.
    """

    def __init__(self, local_ip: str, sipp_port: int, tls_port: int, workdir: str,
                 remote: tuple[str, int] | None = None):
        self.local_ip = local_ip
        self.sipp_port = sipp_port
        self.tls_port = tls_port
        self.remote = remote
        self.swap = (f"{local_ip}:{sipp_port}".encode(), f"{local_ip}:{tls_port}".encode())
        self.error: str | None = None
        self.closed = threading.Event()
        self.socks: list[socket.socket] = []
        self.lock = threading.Lock()
        cert, key = make_self_signed(workdir, "relay")
        self.server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.server_ctx.load_cert_chain(cert, key)
        self.client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.client_ctx.check_hostname = False
        self.client_ctx.verify_mode = ssl.CERT_NONE
        self.tls_listener = self._listen(tls_port)
        self.port = None
        self.threads = [threading.Thread(
            target=self._serve, daemon=True, name="sipp-tls-relay-in",
            args=(self.tls_listener, self._from_proxy, "incoming connection failed"))]
        if remote:
            self.tcp_listener = self._listen(0)
            self.port = self.tcp_listener.getsockname()[1]
            self.threads.append(threading.Thread(
                target=self._serve, daemon=True, name="sipp-tls-relay-out",
                args=(self.tcp_listener, self._from_sipp, f"cannot connect to {remote}")))
        for t in self.threads:
            t.start()

    def _listen(self, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if port:
            # lets the outgoing TLS connection use the same port (_connect_remote)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((self.local_ip, port))
        sock.listen(8)
        sock.settimeout(0.5)
        self._track(sock)
        return sock

    def _track(self, sock):
        with self.lock:
            self.socks.append(sock)

    def _accept(self, listener):
        while not self.closed.is_set():
            try:
                return listener.accept()[0]
            except socket.timeout:
                continue
            except OSError:
                return None
        return None

    def _serve(self, listener, open_pair, failure: str):
        """Relay every connection accepted on listener: open_pair(accepted) returns
        the (SIPp side, TLS side) to pump between; failure names what went wrong
        when it raises."""
        while not self.closed.is_set():
            conn = self._accept(listener)
            if conn is None:
                return
            self._track(conn)  # close() must be able to interrupt open_pair
            try:
                pair = open_pair(conn)
            except (OSError, ssl.SSLError) as e:
                self.error = f"TLS relay: {failure}: {e}"
                conn.close()
                continue
            for s in pair:
                if s is not conn:
                    self._track(s)
            threading.Thread(target=self._pump, args=pair, daemon=True).start()

    def _from_proxy(self, raw: socket.socket) -> tuple[socket.socket, ssl.SSLSocket]:
        """The proxy opened a TLS connection to the phone: relay it to SIPp."""
        raw.settimeout(10)
        tls = self.server_ctx.wrap_socket(raw, server_side=True)
        tls.settimeout(None)
        return socket.create_connection((self.local_ip, self.sipp_port), timeout=5), tls

    def _from_sipp(self, client: socket.socket) -> tuple[socket.socket, ssl.SSLSocket]:
        """SIPp's own connection (-rsa): relay it to the remote over TLS."""
        return client, self._connect_remote()

    def _connect_remote(self) -> ssl.SSLSocket:
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            raw.bind((self.local_ip, self.tls_port))  # source port = Via/Contact port
        except OSError:
            raw.close()
            raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            raw.bind((self.local_ip, 0))
        raw.settimeout(10)
        raw.connect(self.remote)
        tls = self.client_ctx.wrap_socket(raw)
        tls.settimeout(None)
        return tls

    def _pump(self, sipp_side: socket.socket, tls_side: ssl.SSLSocket):
        rewriter = _SipStreamRewriter(self.swap)
        sipp_side.setblocking(False)
        tls_side.setblocking(False)
        try:
            while not self.closed.is_set():
                r, _, _ = select.select([sipp_side, tls_side], [], [], 0.5)
                if tls_side.pending() and tls_side not in r:
                    r.append(tls_side)
                for s in r:
                    try:
                        data = s.recv(65536)
                    except (ssl.SSLWantReadError, BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        return
                    if not data:
                        return
                    if s is sipp_side:
                        self._sendall(tls_side, rewriter.feed(data))
                    else:
                        self._sendall(sipp_side, data)
        finally:
            for s in (sipp_side, tls_side):
                try:
                    s.close()
                except OSError:
                    pass

    @staticmethod
    def _sendall(s: socket.socket, data: bytes):
        view = memoryview(data)
        while view:
            try:
                n = s.send(view)
                view = view[n:]
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                select.select([], [s], [], 0.5)

    def close(self):
        self.closed.set()
        with self.lock:
            socks = list(self.socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked on it
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass
        for t in self.threads:  # the listening ports are free once they are done
            t.join(2)


# ----------------------------------------------------------------------------
# running SIPp


def _resolve_scenario(scenario: str) -> str:
    if os.path.sep in scenario or scenario.endswith(".xml"):
        path = scenario if os.path.isabs(scenario) else os.path.join(SCENARIO_DIR, scenario)
        if not os.path.exists(path) and os.path.exists(scenario):
            path = os.path.abspath(scenario)
    else:
        path = os.path.join(SCENARIO_DIR, scenario + ".xml")
    if not os.path.exists(path):
        raise FileNotFoundError(f"SIPp scenario not found: {path}")
    return path


def _declared_globals(path: str) -> set[str]:
    with open(path, encoding="iso-8859-1") as f:
        text = f.read()
    names: set[str] = set()
    for m in re.finditer(r'<Global\s+variables="([^"]*)"', text):
        names.update(n.strip() for n in m.group(1).split(",") if n.strip())
    return names


def _is_uas(path: str) -> bool:
    with open(path, encoding="iso-8859-1") as f:
        text = re.sub(r"<!--.*?-->", "", f.read(), flags=re.S)
    m = re.search(r"<(send|recv)\b", text)
    return bool(m and m.group(1) == "recv")


def _split_hostport(value: str, default_port: int = 5060) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host:
        return value, default_port
    return host, int(port)


class Sipp:
    """One SIPp run. Arguments:

    scenario    name in sipp_scenarios/ ("mds_call") or a path to an XML file
    remote      "ip:port" of the peer (UAC scenarios); None for a UAS
    local_ip    address SIPp binds (-i, -bind_local) and writes in Via/Contact/SDP
    local_port  its SIP port (-p); a free one when None
    transport   "u1" UDP, "t1" TCP, "l1" TLS ("un"/"tn" pass through as given)
    keys        -key values ([user], [password], [service], [domain], [expires]...);
                defaults in DEFAULT_KEYS, [domain] defaults to the remote host
    variables   -set values for the scenario's globals (ring_ms, talk_ms, hold_ms)
    ring_ms, talk_ms, hold_ms   shortcuts for variables
    extra_headers  list of "Name: value" header lines added to the scenario's
                requests (the [extra_headers] slot)
    calls       UAC: -m calls (None: 1); UAS scenarios stop after that many INVITE
                calls (mds_mwi_subscription: subscriptions) (max_calls); None: no
                limit (stop it yourself)
    timeout     seconds: SIPp's -timeout, and the wrapper kills SIPp (SIGTERM, then
                SIGKILL) `grace` seconds later if it is still running
    workdir     where the logs go (a new temporary directory when None)
    ooc_scenario  scenario for out-of-call requests (-oocsf), e.g. with
                deskphone_online: "deskphone_answer"
    extra_args  more SIPp arguments
    name        prefix of the log files (default: scenario name + local port)
    """

    def __init__(self, scenario: str, remote: str | None = None, local_ip: str = "127.0.0.1",
                 local_port: int | None = None, transport: str = "u1",
                 keys: dict | None = None, variables: dict | None = None,
                 workdir=None, timeout: float = 10, calls: int | None = 1,
                 ring_ms: int | None = None, talk_ms: int | None = None,
                 hold_ms: int | None = None, extra_headers: Iterable[str] | None = None,
                 ooc_scenario: str | None = None, extra_args: Iterable[str] = (),
                 name: str | None = None, grace: float = 3.0, rate: int | None = None,
                 sipp_bin: str | None = None):
        self.scenario_path = _resolve_scenario(scenario)
        self.scenario = os.path.splitext(os.path.basename(self.scenario_path))[0]
        self.remote = remote
        self.local_ip = local_ip
        self.local_port = local_port or free_port(local_ip)
        self.transport = transport
        self.keys = dict(DEFAULT_KEYS)
        if remote:
            self.keys["domain"] = _split_hostport(remote)[0]
        else:
            self.keys["domain"] = local_ip
        # A deskphone behind NAT writes a private address here; the proxy must not use it.
        self.keys["contact_host"] = f"{local_ip}:{self.local_port}"
        self.keys.update({k: str(v) for k, v in (keys or {}).items()})
        if extra_headers:
            lines = [h.strip() for h in extra_headers if h and h.strip()]
            self.keys["extra_headers"] = "".join(h + "\r\n" for h in lines)
        self.variables = dict(DEFAULT_VARIABLES)
        self.variables.update({k: str(v) for k, v in (variables or {}).items()})
        for k, v in (("ring_ms", ring_ms), ("talk_ms", talk_ms), ("hold_ms", hold_ms)):
            if v is not None:
                self.variables[k] = str(int(v))
        self.is_uas = _is_uas(self.scenario_path)
        # a UAC without -m would start a new call every 100 ms until the timeout
        self.calls = calls if (calls or self.is_uas) else 1
        self.timeout = timeout
        self.grace = grace
        self.rate = rate
        self.ooc_path = _resolve_scenario(ooc_scenario) if ooc_scenario else None
        self.extra_args = list(extra_args)
        self.sipp_bin = sipp_bin or SIPP_BIN
        if workdir is None:
            workdir = tempfile.mkdtemp(prefix="sipp-")
        self.workdir = str(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.name = name or f"{self.scenario}-{self.local_ip}-{self.local_port}"
        self.scenario_path = self._materialize(self.scenario_path)
        self.tls_relay: TlsRelay | None = None
        self._relay_needed = transport in ("l1", "ln") and not sipp_has_tls(sipp_bin)
        # SIPp's own port: local_port, except behind the TLS relay, where SIPp listens
        # for TCP on another port of the same length and the relay takes local_port
        self.sipp_port = self.local_port
        if self._relay_needed:
            while True:
                self.sipp_port = free_port(local_ip)
                if len(str(self.sipp_port)) == len(str(self.local_port)):
                    break

    def _materialize(self, path: str) -> str:
        """SIPp reads a response's status code when it loads the scenario, so a
        [code] key can't be used in a status line: such a scenario is copied to the
        work directory with [code] and [reason] written in."""
        with open(path, encoding="iso-8859-1") as f:
            text = f.read()
        if "SIP/2.0 [code]" not in text:
            return path
        code = self.keys.get("code", DEFAULT_KEYS["code"])
        if not (code.isdigit() and 100 <= int(code) < 700):
            raise ValueError(f"code must be a SIP status code, not {code!r}")
        text = text.replace("SIP/2.0 [code] [reason]", f"SIP/2.0 {code} {self.keys.get('reason', '')}")
        out = self._file("xml")
        with open(out, "w", encoding="iso-8859-1") as f:
            f.write(text)
        return out

    # files
    def _file(self, suffix: str) -> str:
        return os.path.join(self.workdir, f"{self.name}.{suffix}")

    @property
    def message_file(self) -> str:
        return self._file("messages.log")

    @property
    def error_file(self) -> str:
        return self._file("errors.log")

    def command(self, relay_port: int | None = None) -> list[str]:
        transport = "t1" if self._relay_needed else self.transport
        cmd = [self.sipp_bin, "-sf", self.scenario_path]
        if self.remote:
            cmd.append(self.remote)
        cmd += ["-t", transport, "-i", self.local_ip, "-p", str(self.sipp_port), "-bind_local",
                # SIPp binds its control socket on every address: free on all of them
                "-cp", str(free_port("0.0.0.0")),
                "-nostdin", "-trace_msg", "-message_file", self.message_file,
                "-trace_err", "-error_file", self.error_file,
                "-default_behaviors", "all,-abortunexp,-bye",
                # without -timeout_error SIPp 3.6.1 keeps waiting for calls in
                # progress at its global timeout; with it, it exits (255) at once
                "-timeout", f"{max(1, int(round(self.timeout)))}s", "-timeout_error",
                "-max_reconnect", "0"]
        if relay_port is not None and self.remote:
            cmd += ["-rsa", f"{self.local_ip}:{relay_port}"]
        if transport in ("l1", "ln"):
            cert, key = make_self_signed(self.workdir)
            cmd += ["-tls_cert", cert, "-tls_key", key]
        declared = _declared_globals(self.scenario_path)
        unlimited = str(10 ** 9)
        if self.is_uas and "max_calls" in declared:
            # UAS: stops itself after `calls` INVITE calls (keep-alives don't count)
            cmd += ["-set", "max_calls", str(self.calls) if self.calls else unlimited]
        elif self.calls:
            cmd += ["-m", str(self.calls)]
        elif "max_calls" in declared:
            cmd += ["-set", "max_calls", unlimited]
        if self.ooc_path:
            ooc_declared = _declared_globals(self.ooc_path)
            cmd += ["-oocsf", self.ooc_path]
            if "max_calls" in ooc_declared and "max_calls" not in declared:
                cmd += ["-set", "max_calls", unlimited]  # answers every out-of-call INVITE
            declared |= ooc_declared
        for k, v in self.variables.items():
            if k in declared:
                cmd += ["-set", k, v]
        # [service] is SIPp's own keyword (-s), not a -key; [authentication] takes
        # its credentials from -au/-ap (SIPp 3.6.1 can't nest [user] in it)
        cmd += ["-s", self.keys["service"], "-au", self.keys.get("auth_user") or self.keys["user"],
                "-ap", self.keys["password"]]
        for k, v in self.keys.items():
            if k not in ("service", "auth_user"):
                cmd += ["-key", k, v]
        if self.rate:
            cmd += ["-r", str(self.rate)]
        cmd += self.extra_args
        return cmd

    def start(self, ready_timeout: float = 5.0) -> "SippProcess":
        """Start in the background; returns once SIPp has bound its SIP port."""
        for path in (self.message_file, self.error_file):
            try:
                os.remove(path)
            except FileNotFoundError:
                pass
        relay_port = None
        if self._relay_needed:
            remote = _split_hostport(self.remote) if self.remote else None
            self.tls_relay = TlsRelay(self.local_ip, self.sipp_port, self.local_port,
                                      self.workdir, remote)
            relay_port = self.tls_relay.port
        cmd = self.command(relay_port)
        stdout = open(self._file("stdout.log"), "wb")
        stderr = open(self._file("stderr.log"), "wb")
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                                    cwd=self.workdir, start_new_session=True)
        finally:
            stdout.close()
            stderr.close()
        bg = SippProcess(self, proc, cmd)
        bg._wait_ready(ready_timeout)
        return bg

    def run(self) -> SippResult:
        """Run to completion (bounded by timeout + grace); returns the result."""
        return self.start().wait()


class SippProcess:
    """A running SIPp. wait(timeout) / stop() return the SippResult; messages()
    reads what was logged so far; wait_for(what) blocks until such a message was
    received. Usable as a context manager (stops it on exit)."""

    def __init__(self, sipp: Sipp, proc: subprocess.Popen, cmd: list[str]):
        self.sipp = sipp
        self.proc = proc
        self.pid = proc.pid
        self.command = cmd
        self.started = time.monotonic()
        self.deadline = self.started + sipp.timeout + sipp.grace
        self._result: SippResult | None = None
        self.timed_out = False
        self.stopped = False

    def _wait_ready(self, ready_timeout: float):
        kind = "udp" if self.sipp.transport in ("u1", "un") else "tcp"
        end = time.monotonic() + ready_timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                return  # exited (error or done): the result tells
            if _port_in_use(self.sipp.local_ip, self.sipp.sipp_port, kind):
                return
            time.sleep(0.02)

    def running(self) -> bool:
        return self.proc.poll() is None

    def messages(self) -> list[SippMessage]:
        try:
            with open(self.sipp.message_file, "rb") as f:
                msgs = parse_message_log(f.read())
        except FileNotFoundError:
            return []
        return self._on_the_wire(msgs)

    def _on_the_wire(self, msgs: list[SippMessage]) -> list[SippMessage]:
        relay = self.sipp.tls_relay
        if not relay:
            return msgs
        out = []
        for m in msgs:
            if m.direction == "sent":
                raw = m.raw.encode("utf-8", "surrogateescape")
                head, sep, body = raw.partition(b"\r\n\r\n")
                raw = _tcp_to_tls(head + sep, relay.swap) + body
                m = SippMessage(raw.decode("utf-8", "replace"), m.direction, "TLS", m.timestamp)
            else:
                m.transport = "TLS"
            out.append(m)
        return out

    def received(self, what=None) -> list[SippMessage]:
        return [m for m in self.messages() if m.direction == "received" and _matches(m, what)]

    def wait_for(self, what, timeout: float = 10.0, count: int = 1) -> list[SippMessage]:
        """Block until `count` received messages match `what` (method, code or
        predicate); returns them. Raises SippError (with the run's description) on
        timeout or if SIPp exits first."""
        end = time.monotonic() + timeout
        while True:
            found = self.received(what)
            if len(found) >= count:
                return found
            if not self.running():
                found = self.received(what)
                if len(found) >= count:
                    return found
                raise SippError(f"SIPp exited before receiving {what!r}\n" + self.wait().describe())
            if time.monotonic() >= end:
                raise SippError(f"no {what!r} received within {timeout}s\n"
                                + self._describe_partial())
            time.sleep(0.05)

    def _describe_partial(self) -> str:
        return "messages so far:\n" + ("\n".join(m.summary() for m in self.messages()) or "  (none)")

    def wait(self, timeout: float | None = None) -> SippResult:
        """Wait for SIPp to exit (at most `timeout` s, and never past its deadline:
        then it is killed and the result says timed_out)."""
        if self._result:
            return self._result
        end = self.deadline if timeout is None else min(self.deadline, time.monotonic() + timeout)
        try:
            self.proc.wait(max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.timed_out = True
            self._terminate()
        return self._finish()

    def stop(self) -> SippResult:
        """Stop it now (SIGTERM by PID, SIGKILL if needed); the result keeps every
        message logged so far."""
        if self._result:
            return self._result
        if self.running():
            self.stopped = True
            self._terminate()
        return self._finish()

    def _terminate(self):
        for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
            if self.proc.poll() is not None:
                return
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def _finish(self) -> SippResult:
        if self._result:
            return self._result
        relay_error = None
        if self.sipp.tls_relay:
            self.sipp.tls_relay.close()
            relay_error = self.sipp.tls_relay.error

        def read(path):
            try:
                with open(path, "rb") as f:
                    return f.read().decode("utf-8", "replace")
            except FileNotFoundError:
                return ""
        stderr = read(self.sipp._file("stderr.log"))
        if self.proc.returncode == 255 and re.search(r"timed out after '[\d.]+' seconds", stderr):
            self.timed_out = True  # SIPp's own -timeout (with -timeout_error)
        if relay_error:
            stderr = (stderr + "\n" + relay_error).strip()
        self._result = SippResult(
            scenario=self.sipp.scenario, command=self.command, returncode=self.proc.returncode,
            stdout=read(self.sipp._file("stdout.log")), stderr=stderr,
            error_log=read(self.sipp.error_file), messages=self.messages(),
            timed_out=self.timed_out, stopped=self.stopped, workdir=self.sipp.workdir,
            message_file=self.sipp.message_file)
        return self._result

    def __enter__(self) -> "SippProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def run(scenario: str, **kwargs) -> SippResult:
    """Sipp(scenario, **kwargs).run()"""
    return Sipp(scenario, **kwargs).run()


def _selftest() -> int:
    """SIPp against SIPp on loopback: every UAC scenario against its UAS, over UDP,
    TCP and TLS (relay to relay when SIPp has no TLS). A UAS that only answers an
    out-of-dialog request (not a call: it doesn't stop by itself) is stopped once it
    received it (the pair's fourth item: that method)."""
    pairs = [("mds_call", "deskphone_answer", {}, None),
             ("mds_call_remote_bye", "deskphone_answer_hangup", {}, None),
             ("mds_call_cancel", "deskphone_ring", {"ring_ms": 200}, None),
             ("mds_call_cancel", "deskphone_early_media", {"ring_ms": 2000}, None),
             ("mds_call_expect_error", "deskphone_reject", {}, None),
             ("deskphone_call", "mds_answer", {}, None),
             ("deskphone_call_expect_error", "deskphone_reject", {}, None),
             ("deskphone_subscribe_mwi", "mds_mwi_subscription", {}, None),
             ("mds_mwi_notify", "deskphone_answer", {}, "NOTIFY")]
    failures = 0
    with tempfile.TemporaryDirectory(prefix="sipp-selftest-") as work:
        for transport in ("u1", "t1", "l1"):
            for uac, uas, extra, ood in pairs:
                port = free_port("127.0.0.20")
                server = Sipp(uas, local_ip="127.0.0.20", local_port=port, transport=transport,
                              workdir=work, timeout=10).start()
                client = Sipp(uac, remote=f"127.0.0.20:{port}", local_ip="127.0.0.10",
                              transport=transport, workdir=work, timeout=10, talk_ms=100,
                              **extra).run()
                if ood:
                    try:
                        server.wait_for(ood, timeout=5)
                    except SippError:
                        pass  # the result below tells
                    served = server.stop()
                    # stopped by SIGTERM: 0 unless one of its "calls" failed
                    good = (client.ok and served.returncode == 0
                            and len(served.received(ood)) == 1)
                else:
                    served = server.wait(5)
                    good = client.ok and served.ok
                failures += not good
                print(f"{'ok ' if good else 'FAIL'} {transport} {uac} -> {uas}: "
                      f"{' '.join(str(c) for c in client.codes())}")
                if not good:
                    print(client.describe())
                    print(served.describe())
    print(f"{len(pairs) * 3 - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(_selftest())
