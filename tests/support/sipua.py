"""A small SIP user agent over WebSocket (RFC 7118) playing the browser softphone in tests.

It behaves like JsSIP where that matters to a proxy: random ``.invalid`` Via and Contact
hosts, ``transport=ws`` contacts with ``+sip.instance``/``reg-id`` on REGISTER, one Call-ID
for all REGISTERs, WebRTC-looking SDP, and no WebSocket pings of its own (browsers send
none; the proxy's keepalive is answered by the websockets library).

    phone = WsPhone("ws://127.0.0.1:8088/ws", "1000", "secret", "127.0.0.1")
    phone.connect(); assert phone.register().status == 200
    call = other.invite("sip:1000@127.0.0.1", wait=False)
    dialog = phone.answer(phone.wait_request("INVITE"))
    assert call.wait_answer().status == 200
    phone.wait_request("ACK"); dialog.bye(); phone.close()

Threading: each ``WsPhone`` has one reader thread. It parses every frame, does what a real
UA does without being asked (100 Trying to a new INVITE, ACK for every final response to
our INVITEs, the retry with credentials after a 401/407, 200 to BYE/OPTIONS, 200 + 487 on
CANCEL), records the message in ``received`` and wakes the waiters. It never waits for
anything, so it can't deadlock; everything that waits runs in the test's thread. A helper
thread per answered call retransmits the 200 OK until the ACK. One re-entrant lock
(``WsPhone._cond``) guards all state and every send.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import random
import re
import select
import socket
import ssl
import string
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from tests.support.sipmessage import SipMessage, header_params, uri_of

__all__ = ["WsPhone", "Dialog", "webrtc_sdp"]

log = logging.getLogger("sipua")

T1 = 0.5  # RFC 3261 timer values, used for the UAS 2xx retransmissions
T2 = 4.0
ALLOW = "INVITE,ACK,CANCEL,BYE,OPTIONS,MESSAGE,INFO,NOTIFY"


# --------------------------------------------------------------------------- helpers


def _token(length: int = 10) -> str:
    return "".join(random.choices(string.ascii_lowercase + string.digits, k=length))


def webrtc_sdp(answer: bool = False) -> str:
    """An SDP shaped like Chrome's audio offer/answer (DTLS-SRTP, ICE, rtcp-mux, BUNDLE)."""
    fingerprint = ":".join(f"{b:02X}" for b in os.urandom(32))
    port = random.randint(49152, 65535)
    lines = [
        "v=0",
        f"o=- {random.randint(10**17, 10**18)} 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0",
        "a=msid-semantic: WMS *",
        f"m=audio {port} UDP/TLS/RTP/SAVPF 111 0 8 101",
        "c=IN IP4 127.0.0.1",
        "a=rtcp:9 IN IP4 0.0.0.0",
        f"a=candidate:{random.randint(1, 2**31)} 1 udp 2122260223 127.0.0.1 {port} typ host generation 0",
        f"a=ice-ufrag:{_token(4)}",
        f"a=ice-pwd:{_token(24)}",
        "a=ice-options:trickle",
        f"a=fingerprint:sha-256 {fingerprint}",
        f"a=setup:{'active' if answer else 'actpass'}",
        "a=mid:0",
        "a=sendrecv",
        f"a=msid:{uuid.uuid4()} {uuid.uuid4()}",
        "a=rtcp-mux",
        "a=rtpmap:111 opus/48000/2",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
    ]
    return "\r\n".join(lines) + "\r\n"


def _finish(lines: list[str], body: str = "", content_type: str | None = None) -> str:
    """Terminate a header block: Content-Type (with a body) and Content-Length, always."""
    if body:
        lines.append(f"Content-Type: {content_type or 'application/sdp'}")
    lines.append(f"Content-Length: {len(body.encode())}")
    return "\r\n".join(lines) + "\r\n\r\n" + body


_AUTH_PARAM = re.compile(r'([\w-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]+)')
_HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


def _challenge_params(challenge: str) -> dict[str, str] | None:
    scheme, _, rest = challenge.strip().partition(" ")
    if scheme.lower() != "digest":
        return None
    return {
        k.lower(): (v[1:-1] if v.startswith('"') else v) for k, v in _AUTH_PARAM.findall(rest)
    }


def _challenges(resp: SipMessage) -> list[dict[str, str]]:
    name = "Proxy-Authenticate" if resp.status == 407 else "WWW-Authenticate"
    return [p for p in map(_challenge_params, resp.header_all(name)) if p]


def _digest(challenge: dict[str, str], method: str, uri: str, user: str, password: str) -> str | None:
    """The Authorization value answering one Digest challenge (RFC 2617/8760: MD5, SHA-256,
    their -sess variants, qop=auth or no qop); None if the challenge can't be answered."""
    algorithm = challenge.get("algorithm", "MD5")
    hash_name = algorithm.upper().removesuffix("-SESS")
    qops = [q.strip().lower() for q in challenge.get("qop", "").split(",") if q.strip()]
    if hash_name not in _HASHES or "nonce" not in challenge or (qops and "auth" not in qops):
        return None

    def h(text: str) -> str:
        return _HASHES[hash_name](text.encode()).hexdigest()

    realm, nonce, cnonce = challenge.get("realm", ""), challenge["nonce"], _token(16)
    ha1 = h(f"{user}:{realm}:{password}")
    if algorithm.upper().endswith("-SESS"):
        ha1 = h(f"{ha1}:{nonce}:{cnonce}")
    ha2 = h(f"{method}:{uri}")
    value = f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", algorithm={algorithm}'
    if qops:
        nc = "00000001"  # each attempt answers a fresh challenge
        value += f', response="{h(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")}", qop=auth, nc={nc}, cnonce="{cnonce}"'
    else:
        value += f', response="{h(f"{ha1}:{nonce}:{ha2}")}"'
    if "opaque" in challenge:
        value += f', opaque="{challenge["opaque"]}"'
    return value


# --------------------------------------------------------------------------- transactions


@dataclass
class _Req:
    """What a request is made of; a new CSeq/branch turns it into a transaction."""

    method: str
    ruri: str
    call_id: str
    from_: str
    to: str
    routes: list[str] = field(default_factory=list)
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: str = ""
    content_type: str | None = None
    dialog: Dialog | None = None
    # Answer a 401/407 with credentials, using next_cseq() for the new CSeq.
    auth: bool = False
    next_cseq: Callable[[], int] | None = None


@dataclass
class _ClientTxn:
    req: _Req
    cseq: int
    branch: str
    via: str
    message: SipMessage
    attempt: int = 0  # how many challenges this request has answered
    responses: list[SipMessage] = field(default_factory=list)
    final: SipMessage | None = None
    retry: _ClientTxn | None = None  # the re-sent request, when final was a challenge


@dataclass
class _ServerInvite:
    """An INVITE we received, until the test answers, rejects, or the caller cancels it."""

    request: SipMessage
    to_tag: str
    state: str = "proceeding"  # -> answered | rejected | cancelled
    last_response: str | None = None
    dialog: Dialog | None = None
    ack: threading.Event = field(default_factory=threading.Event)


# --------------------------------------------------------------------------- TLS


class _SerializedTLSSocket:
    """An SSLSocket made safe for websockets' sync client, which reads in its own thread
    while other threads write. OpenSSL forbids concurrent use of one connection; with
    TLS 1.3 (session tickets arrive after the handshake) the race shows as "[SSL] internal
    error" or a reader blocked forever inside a half-read record. Every TLS call runs under
    a lock on a non-blocking socket; waiting for the network happens outside the lock."""

    def __init__(self, sock: ssl.SSLSocket):
        self._sock = sock
        self._lock = threading.Lock()
        self._timeout: float | None = None
        self.family = sock.family
        sock.setblocking(False)

    def fileno(self) -> int:
        return self._sock.fileno()

    def getsockname(self):
        return self._sock.getsockname()

    def getpeername(self):
        return self._sock.getpeername()

    def settimeout(self, timeout: float | None) -> None:
        self._timeout = timeout  # applies to each network wait in sendall()

    def _wait(self, want_write: bool, timeout: float | None) -> None:
        fd = [self._sock.fileno()]
        r, w, _ = select.select([] if want_write else fd, fd if want_write else [], [], timeout)
        if timeout is not None and not (r or w):
            raise TimeoutError("TLS socket timed out")

    def recv(self, size: int) -> bytes:
        while True:
            with self._lock:
                try:
                    data = self._sock.recv(size)
                    # Decrypted bytes left inside OpenSSL would not wake the caller's select().
                    while self._sock.pending() and len(data) < size:
                        data += self._sock.recv(size - len(data))
                    return data
                except ssl.SSLWantReadError:
                    want_write = False
                except ssl.SSLWantWriteError:
                    want_write = True
            self._wait(want_write, None)

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            with self._lock:
                try:
                    view = view[self._sock.send(view) :]
                    continue
                except ssl.SSLWantWriteError:
                    want_write = True
                except ssl.SSLWantReadError:
                    want_write = False
            self._wait(want_write, self._timeout)

    def shutdown(self, how: int) -> None:
        # socket.shutdown, not SSLSocket.shutdown: that one also drops the TLS state, and
        # the reader still has to decrypt the server's closing frames after our SHUT_WR.
        socket.socket.shutdown(self._sock, how)

    def close(self) -> None:
        self._sock.close()


class _Connection(ClientConnection):
    def __init__(self, sock, protocol, **kwargs):
        if isinstance(sock, ssl.SSLSocket):
            sock = _SerializedTLSSocket(sock)
        super().__init__(sock, protocol, **kwargs)


# --------------------------------------------------------------------------- dialog


class Dialog:
    """One call leg. ``role`` is "uac" (we called) or "uas" (we answered).

    ``state``: calling -> confirmed | terminated (uac); confirmed -> terminated (uas).
    ``response`` is the final response to the INVITE (for a uas dialog: the 200 we sent).
    """

    def __init__(self, phone: WsPhone, role: str, call_id: str, local: str, remote: str):
        self.phone = phone
        self.role = role
        self.call_id = call_id
        self.local_header = local  # From value of our requests, with our tag
        self.remote_header = remote  # To value of our requests (tag once known)
        self.local_tag = header_params(local).get("tag")
        self.remote_tag = header_params(remote).get("tag")
        self.remote_target = uri_of(remote)
        self.route_set: list[str] = []
        self.local_cseq = 0
        self.state = "calling"
        self.cancelled = False
        self.invite: SipMessage | None = None
        self.response: SipMessage | None = None
        self.responses: list[SipMessage] = []  # uac: every response to our INVITE(s)
        self.local_sdp = ""
        self.remote_sdp = ""
        self._txn: _ClientTxn | None = None
        self._acks: dict[int, str] = {}  # ACK sent for the 2xx of each INVITE, by CSeq

    def __repr__(self) -> str:
        return f"<Dialog {self.role} {self.state} call-id={self.call_id}>"

    def _next_cseq(self) -> int:
        with self.phone._cond:
            self.local_cseq += 1
            return self.local_cseq

    def _request(self, method: str, headers=(), body: str = "", content_type=None,
                 auth: bool = True) -> _Req:
        return _Req(method, self.remote_target, self.call_id, self.local_header,
                    self.remote_header, list(self.route_set), list(headers), body,
                    content_type, self, auth, self._next_cseq)

    def request(self, method: str, headers=(), body: str = "", content_type=None,
                timeout: float = 5, auth: bool = True) -> SipMessage:
        """Send an in-dialog request (R-URI = remote target, Route = route set) and return
        its final response. A target refresh (re-INVITE, UPDATE) carries our Contact, as
        RFC 3261 12.2.1.1 wants and JsSIP does."""
        method = method.upper()
        if method in ("INVITE", "UPDATE"):
            headers = [("Contact", self.phone._dialog_contact()), *headers]
        req = self._request(method, headers, body, content_type, auth)
        return self.phone._wait_final(self.phone._send_request(req), timeout)

    def bye(self, timeout: float = 5) -> SipMessage:
        resp = self.request("BYE", timeout=timeout)
        self.state = "terminated"
        return resp

    def wait_request(self, method: str, timeout: float = 5) -> SipMessage:
        """Like WsPhone.wait_request, limited to this dialog's Call-ID."""
        return self.phone.wait_request(method, timeout, call_id=self.call_id)

    def wait_bye(self, timeout: float = 5) -> SipMessage:
        """Wait for the peer's BYE (already answered 200 by the reader thread)."""
        return self.wait_request("BYE", timeout)

    def wait_answer(self, timeout: float = 10) -> SipMessage:
        """uac: wait for the final response to the INVITE (after any 401/407 retry)."""
        return self.phone._wait_final(self._txn, timeout)

    def cancel(self, timeout: float = 5) -> SipMessage | None:
        """uac: hang up before the answer. Waits for a provisional response (RFC 3261 9.1),
        sends CANCEL and returns its final response; the INVITE's 487 is ACKed by the reader
        and left for wait_answer(). If the INVITE already has a final response, returns None
        (a 2xx is then ended with BYE, as it is when a 2xx crosses the CANCEL)."""
        phone = self.phone
        deadline = time.monotonic() + timeout
        # self._txn moves on to the re-sent INVITE when a challenge is answered.
        phone._wait(lambda: self._txn if self._txn.responses else None, timeout, "a response")
        with phone._cond:
            self.cancelled = True
            txn = self._txn
            final = txn.final
            if final is None:
                cancel = replace(txn.req, method="CANCEL", headers=[], body="", auth=False)
                ctxn = phone._send_request(cancel, txn.cseq, branch=txn.branch)
        if final is None:
            return phone._wait_final(ctxn, deadline - time.monotonic())
        if final.status < 300 and self.state == "confirmed":
            self.bye(timeout)
        return None


# --------------------------------------------------------------------------- phone


class WsPhone:
    """A browser-like SIP phone on one WebSocket connection. See the module docstring."""

    def __init__(
        self,
        url: str,
        user: str,
        password: str | None,
        domain: str,
        *,
        ssl_insecure: bool = False,
        origin: str | None = None,
        subprotocols: tuple[str, ...] = ("sip",),
        auth_user: str | None = None,
        display_name: str | None = None,
        user_agent: str = "sipua-test/1.0 (JsSIP-like)",
        use_gruu: bool = False,
        trying: bool = True,
        open_timeout: float = 5,
    ):
        self.url = url
        self.user = user
        self.password = password
        self.domain = domain
        self.ssl_insecure = ssl_insecure
        self.origin = origin
        self.subprotocols = subprotocols
        self.auth_user = auth_user or user
        self.display_name = display_name
        self.user_agent = user_agent
        # JsSIP puts the registrar's pub-gruu in its dialog Contacts when it gets one.
        self.use_gruu = use_gruu
        # JsSIP's INVITE server transaction answers 100 Trying at once; a proxy's tm
        # CANCELs only branches that sent a provisional. False: a tab that never reacts.
        self.trying = trying
        self.open_timeout = open_timeout
        self.name = f"{user}#{_token(4)}"  # tells two tabs of one user apart in logs

        self.transport = "WSS" if url.lower().startswith("wss:") else "WS"
        self.via_host = f"{_token(12)}.invalid"
        self.contact_uri = f"sip:{_token(8)}@{_token(12)}.invalid;transport=ws"
        self.instance_id = str(uuid.uuid4())
        self.reg_call_id = _token(22)
        self._reg_cseq = itertools.count(1)
        self.pub_gruu: str | None = None
        self.temp_gruu: str | None = None

        self.received: list[SipMessage] = []
        self.sent: list[SipMessage] = []
        self.errors: list[BaseException] = []  # unparsable frames, failures in the reader
        self.subprotocol: str | None = None  # what the server selected in the handshake
        self._cond = threading.Condition(threading.RLock())
        self._taken: set[int] = set()  # ids of requests already returned by wait_request
        self._client_txns: dict[tuple, _ClientTxn] = {}
        self._server_invites: list[_ServerInvite] = []
        self._dialogs: dict[tuple[str, str], Dialog] = {}
        self._ws = None
        self._reader: threading.Thread | None = None
        self._closed = False
        self._stopped = threading.Event()

    def __repr__(self) -> str:
        return f"<WsPhone {self.name} {self.url}>"

    def __enter__(self) -> WsPhone:
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- connection

    def connect(self) -> None:
        ssl_ctx = None
        if self.transport == "WSS":
            ssl_ctx = ssl.create_default_context()
            if self.ssl_insecure:
                ssl_ctx.check_hostname = False
                ssl_ctx.verify_mode = ssl.CERT_NONE
        self._ws = ws_connect(
            self.url,
            ssl=ssl_ctx,
            origin=self.origin,
            subprotocols=list(self.subprotocols) or None,
            compression=None,  # Kamailio's websocket module supports no extensions
            user_agent_header=self.user_agent,
            proxy=None,  # never route 127.0.0.1 through an *_PROXY from the environment
            open_timeout=self.open_timeout,
            ping_interval=None,  # browsers never ping; the server's pings are answered
            close_timeout=5,
            create_connection=_Connection,
            legacy=True,  # the phone keeps its connection open beyond one `with` block
        )
        self.subprotocol = self._ws.subprotocol
        self._closed = False
        self._stopped.clear()
        self._reader = threading.Thread(target=self._read_loop, name=f"sipua-{self.name}", daemon=True)
        self._reader.start()

    @property
    def connected(self) -> bool:
        return self._ws is not None and not self._closed

    def close(self, timeout: float = 5) -> None:
        """Graceful: WebSocket Close frame (1000), wait for the server's Close."""
        self._stopped.set()
        if self._ws is not None:
            self._ws.close()
        self._join(timeout)

    def drop(self, timeout: float = 5) -> None:
        """Abrupt: TCP FIN without a Close frame, like a killed browser process."""
        self._stopped.set()
        if self._ws is not None:
            try:
                # shutdown() (not close()) wakes the library's reader, which then closes.
                self._ws.socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._join(timeout)

    def _join(self, timeout: float) -> None:
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout)

    # ---- sending

    def _send(self, text: str) -> None:
        with self._cond:
            if self._ws is None:
                raise ConnectionError(f"{self.name}: not connected")
            try:
                self._ws.send(text)
            except ConnectionClosed as exc:
                raise ConnectionError(f"{self.name}: WebSocket is closed") from exc
            self.sent.append(SipMessage(text))
        log.debug("%s >>>\n%s", self.name, text)

    def _send_quietly(self, text: str) -> None:
        """For automatic sends, which have no caller to report a dead connection to."""
        try:
            self._send(text)
        except ConnectionError as exc:
            log.debug("%s: automatic send failed: %s", self.name, exc)

    def send_raw(self, text: str) -> None:
        """Send any text as one WebSocket frame (for malformed-message tests)."""
        self._send(text)

    def _send_request(self, req: _Req, cseq: int | None = None, branch: str | None = None,
                      credentials: list[tuple[str, str]] = (), attempt: int = 0,
                      track: bool = True) -> _ClientTxn:
        """Send one request as a new client transaction: next CSeq and a new branch unless
        given (ACK and CANCEL reuse them); track=False for an ACK, which gets no response."""
        cseq = req.next_cseq() if cseq is None else cseq
        branch = branch or f"z9hG4bK{_token(16)}"
        via = f"SIP/2.0/{self.transport} {self.via_host};branch={branch};rport"
        lines = [f"{req.method} {req.ruri} SIP/2.0", f"Via: {via}", "Max-Forwards: 70"]
        lines += [f"Route: {r}" for r in req.routes]
        lines += [f"To: {req.to}", f"From: {req.from_}", f"Call-ID: {req.call_id}",
                  f"CSeq: {cseq} {req.method}"]
        lines += [f"{n}: {v}" for n, v in [*credentials, *req.headers]]
        lines.append(f"User-Agent: {self.user_agent}")
        text = _finish(lines, req.body, req.content_type)
        txn = _ClientTxn(req, cseq, branch, via, SipMessage(text), attempt)
        with self._cond:
            # Registered before sending: the reader can't see the response first.
            if track:
                self._client_txns[(req.call_id, cseq, req.method, branch)] = txn
            if req.method == "INVITE" and req.dialog is not None:
                req.dialog._txn = txn
                req.dialog.invite = txn.message
            self._send(text)
        return txn

    def _response(self, req: SipMessage, status: int, reason: str, to_tag: str | None = None,
                  headers=(), body: str = "", content_type: str | None = None) -> str:
        lines = [f"SIP/2.0 {status} {reason}"]
        lines += [f"Via: {v}" for v in req.header_all("Via")]
        if req.method == "INVITE" and 100 < status < 300:
            # RFC 3261 12.1.1: dialog-creating responses copy the Record-Route.
            lines += [f"Record-Route: {r}" for r in req.header_all("Record-Route")]
        to = req.header("To") or ""
        if to_tag and not req.to_tag:
            to += f";tag={to_tag}"
        lines += [f"From: {req.header('From')}", f"To: {to}", f"Call-ID: {req.call_id}",
                  f"CSeq: {req.header('CSeq')}"]
        lines += [f"{n}: {v}" for n, v in headers]
        lines.append(f"Server: {self.user_agent}")
        return _finish(lines, body, content_type)

    def _dialog_contact(self) -> str:
        if self.use_gruu and self.pub_gruu:
            return f"<{self.pub_gruu}>"
        return f"<{self.contact_uri}>"

    def _aor(self) -> str:
        name = f'"{self.display_name}" ' if self.display_name else ""
        return f"{name}<sip:{self.user}@{self.domain}>"

    # ---- waiting

    def _wait(self, pick, timeout: float, what: str):
        """Wait until pick() (called under the lock) returns something other than None."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                result = pick()
                if result is not None:
                    return result
                if self._closed:
                    raise ConnectionError(f"{self.name}: connection closed while waiting for {what}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{self.name}: no {what} within {timeout}s")
                self._cond.wait(remaining)

    def _wait_final(self, txn: _ClientTxn, timeout: float) -> SipMessage:
        """The final response of a request, following its re-sends with credentials."""

        def pick():
            last = txn
            while last.retry is not None:
                last = last.retry
            return last.final

        return self._wait(pick, max(timeout, 0), f"final response to {txn.req.method}")

    def _retry_with_credentials(self, txn: _ClientTxn, challenge: SipMessage) -> bool:
        """Re-send a challenged request with credentials (CSeq+1, new branch). A second
        challenge is answered only if it says the nonce was stale."""
        if not txn.req.auth or self.password is None or txn.attempt >= 3:
            return False
        challenges = _challenges(challenge)
        if txn.attempt and not any(c.get("stale", "").lower() == "true" for c in challenges):
            return False
        credentials = self._credentials(challenge.status, challenges, txn.req)
        if not credentials:
            return False
        txn.retry = self._send_request(txn.req, credentials=credentials, attempt=txn.attempt + 1)
        return True

    def _credentials(self, status: int, challenges, req: _Req) -> list[tuple[str, str]]:
        header = "Proxy-Authorization" if status == 407 else "Authorization"
        values = (_digest(ch, req.method, req.ruri, self.auth_user, self.password) for ch in challenges)
        return [(header, v) for v in values if v]

    def wait_request(self, method: str, timeout: float = 5, call_id: str | None = None) -> SipMessage:
        """The oldest received request of this method not yet returned by wait_request
        (a queue: a second call returns the next one). Raises TimeoutError."""
        method = method.upper()

        def pick():
            for msg in self.received:
                if (msg.method == method and id(msg) not in self._taken
                        and (call_id is None or msg.call_id == call_id)):
                    self._taken.add(id(msg))
                    return msg
            return None

        return self._wait(pick, timeout, f"{method} request")

    def requests(self, method: str | None = None) -> list[SipMessage]:
        with self._cond:
            return [m for m in self.received
                    if m.is_request and (method is None or m.method == method.upper())]

    def responses(self, method: str | None = None) -> list[SipMessage]:
        """Received responses, optionally only those whose CSeq method matches."""
        with self._cond:
            return [m for m in self.received
                    if m.is_response and (method is None or m.cseq[1] == method.upper())]

    # ---- registration

    def register(self, expires: int = 600, auth: bool = True, headers=(), timeout: float = 5) -> SipMessage:
        contact = f'<{self.contact_uri}>;+sip.instance="<urn:uuid:{self.instance_id}>";reg-id=1'
        return self._register(contact, expires, auth, headers, timeout)

    def unregister(self, auth: bool = True, timeout: float = 5) -> SipMessage:
        return self.register(0, auth, timeout=timeout)

    def unregister_all(self, auth: bool = True, timeout: float = 5) -> SipMessage:
        return self._register("*", 0, auth, (), timeout)

    def _register(self, contact: str, expires: int, auth: bool, headers, timeout: float) -> SipMessage:
        req = _Req(
            "REGISTER",
            f"sip:{self.domain}",
            self.reg_call_id,  # one Call-ID for all REGISTERs (RFC 3261 10.2.4)
            f"{self._aor()};tag={_token()}",
            self._aor(),
            headers=[("Contact", contact), ("Expires", str(expires)), ("Allow", ALLOW),
                     ("Supported", "path,gruu,outbound"), *headers],
            auth=auth,
            next_cseq=self._reg_cseq.__next__,
        )
        final = self._wait_final(self._send_request(req), timeout)
        if 200 <= final.status < 300:
            self._learn_gruu(final)
        return final

    def _learn_gruu(self, resp: SipMessage) -> None:
        self.pub_gruu = self.temp_gruu = None
        for contact in resp.header_all("Contact"):
            params = header_params(contact)
            if params.get("+sip.instance") == f"<urn:uuid:{self.instance_id}>":
                self.pub_gruu, self.temp_gruu = params.get("pub-gruu"), params.get("temp-gruu")

    # ---- out-of-dialog requests and calls

    def request(self, method: str, ruri: str, headers=(), body: str = "",
                content_type: str | None = None, auth: bool = True, timeout: float = 5) -> SipMessage:
        """An out-of-dialog non-INVITE request (OPTIONS, MESSAGE, ...); returns the final
        response."""
        req = _Req(method.upper(), ruri, _token(22), f"{self._aor()};tag={_token()}", f"<{ruri}>",
                   headers=list(headers), body=body, content_type=content_type, auth=auth,
                   next_cseq=itertools.count(1).__next__)
        return self._wait_final(self._send_request(req), timeout)

    def invite(self, target: str, sdp: str | None = None, timeout: float = 10, headers=(),
               wait: bool = True) -> Dialog:
        """Call target. sdp=None sends a WebRTC-like offer, "" sends no body (the offer is
        then expected in the 2xx and answered in the ACK). With wait=False the Dialog is
        returned at once; call wait_answer() (or cancel()) on it."""
        dialog = Dialog(self, "uac", _token(22), f"{self._aor()};tag={_token()}", f"<{target}>")
        dialog.local_sdp = webrtc_sdp() if sdp is None else sdp
        self._send_request(dialog._request(
            "INVITE",
            [("Contact", self._dialog_contact()), ("Allow", ALLOW),
             ("Supported", "ice,replaces,outbound"), *headers],
            dialog.local_sdp,
            "application/sdp",
        ))
        if wait:
            dialog.wait_answer(timeout)
        return dialog

    # ---- answering calls

    def _server_invite(self, req: SipMessage) -> _ServerInvite:
        for inv in self._server_invites:
            if inv.request is req:
                return inv
        raise ValueError(f"{self.name}: {req!r} is not an INVITE received by this phone")

    def ring(self, req: SipMessage) -> None:
        """Send 180 Ringing (with our To-tag and Contact)."""
        if not self.provisional(req, 180, "Ringing"):
            raise RuntimeError(f"{self.name}: cannot ring, the INVITE is no longer ringing")

    def provisional(self, req: SipMessage, status: int, reason: str, sdp: str | None = None) -> bool:
        """Send a provisional response (with our To-tag and Contact; 183 with an SDP answer
        is early media). False once the INVITE is no longer ringing (cancelled...)."""
        with self._cond:
            inv = self._server_invite(req)
            if inv.state != "proceeding":
                return False
            body = ("", None) if sdp is None else (sdp, "application/sdp")
            inv.last_response = self._response(
                req, status, reason, inv.to_tag, [("Contact", self._dialog_contact())], *body)
            self._send(inv.last_response)
            return True

    def answer(self, req: SipMessage, ring: bool = True, sdp: str | None = None, headers=()) -> Dialog:
        """180 (if ring) then 200 OK with an SDP answer. The 200 is retransmitted until
        the ACK arrives (RFC 3261 13.3.1.4), as browsers do even over WebSocket."""
        with self._cond:
            inv = self._server_invite(req)
            if inv.state != "proceeding":
                raise RuntimeError(f"{self.name}: cannot answer, the INVITE is {inv.state}")
            if ring:
                self.ring(req)
            local = f"{req.header('To')};tag={inv.to_tag}"
            dialog = Dialog(self, "uas", req.call_id, local, req.header("From") or "")
            contact = req.header("Contact")
            if contact:
                dialog.remote_target = uri_of(contact)
            dialog.route_set = req.header_all("Record-Route")
            dialog.invite = req
            dialog.remote_sdp = req.body
            dialog.local_sdp = webrtc_sdp(answer=True) if sdp is None else sdp
            dialog.state = "confirmed"
            text = self._response(
                req, 200, "OK", inv.to_tag,
                [("Contact", self._dialog_contact()), ("Allow", ALLOW),
                 ("Supported", "outbound"), *headers],
                dialog.local_sdp, "application/sdp")
            inv.state, inv.last_response, inv.dialog = "answered", text, dialog
            self._dialogs[(dialog.call_id, inv.to_tag)] = dialog
            self._send(text)
            dialog.response = self.sent[-1]
        threading.Thread(target=self._retransmit_2xx, args=(inv,), daemon=True,
                         name=f"sipua-2xx-{self.name}").start()
        return dialog

    def reject(self, req: SipMessage, status: int = 486, reason: str = "Busy Here", headers=()) -> None:
        """A final error response to an INVITE (the proxy's ACK is absorbed)."""
        with self._cond:
            inv = self._server_invite(req)
            if inv.state != "proceeding":
                raise RuntimeError(f"{self.name}: cannot reject, the INVITE is {inv.state}")
            inv.state = "rejected"
            inv.last_response = self._response(req, status, reason, inv.to_tag, headers)
            self._send(inv.last_response)

    def _retransmit_2xx(self, inv: _ServerInvite) -> None:
        interval, waited = T1, 0.0
        dialog = inv.dialog
        while waited < 64 * T1:
            if inv.ack.wait(interval) or self._stopped.is_set() or dialog.state == "terminated":
                return
            waited += interval
            with self._cond:
                self._send_quietly(inv.last_response)
            interval = min(interval * 2, T2)
        log.warning("%s: no ACK for the 200 OK of %s, sending BYE", self.name, dialog.call_id)
        dialog.state = "terminated"
        try:
            self._send_request(dialog._request("BYE"))
        except ConnectionError:
            pass

    # ---- the reader thread

    def _read_loop(self) -> None:
        try:
            for frame in self._ws:
                self._on_frame(frame)
        except ConnectionClosed:
            pass
        except Exception as exc:  # keep it visible to the test, the thread dies anyway
            log.exception("%s: reader failed", self.name)
            self.errors.append(exc)
        finally:
            with self._cond:
                self._closed = True
                self._stopped.set()
                self._cond.notify_all()

    def _on_frame(self, frame: str | bytes) -> None:
        try:
            msg = SipMessage(frame)
        except ValueError as exc:
            log.warning("%s: unparsable frame %r: %s", self.name, frame[:200], exc)
            self.errors.append(exc)
            return
        log.debug("%s <<<\n%s", self.name, msg.raw)
        with self._cond:
            # Automatic answers go out before the message becomes visible to waiters, so
            # a test that saw the BYE knows its 200 OK is already sent.
            try:
                if msg.is_request:
                    self._on_request(msg)
                else:
                    self._on_response(msg)
            except Exception as exc:
                log.exception("%s: failed to handle %r", self.name, msg)
                self.errors.append(exc)
            self.received.append(msg)
            self._cond.notify_all()

    def _on_response(self, msg: SipMessage) -> None:
        txn = self._client_txns.get((msg.call_id, msg.cseq[0], msg.cseq[1], msg.branch))
        if txn is None:
            log.warning("%s: response matches no transaction: %r", self.name, msg)
            return
        txn.responses.append(msg)
        dialog = txn.req.dialog if txn.req.method == "INVITE" else None
        if dialog is not None:
            dialog.responses.append(msg)
        if msg.status < 200:
            return
        if dialog is not None and msg.status >= 300:
            # RFC 3261 17.1.1.3: hop-by-hop ACK in the INVITE's transaction, for every
            # copy of the final response.
            ack = replace(txn.req, method="ACK", to=msg.header("To"), headers=[], body="")
            self._send_request(ack, txn.cseq, branch=txn.branch, track=False)
        if txn.final is not None:  # a copy, or a 2xx from another fork
            if dialog is not None and msg.status < 300:
                self._on_invite_2xx(txn, msg)
            return
        txn.final = msg
        if msg.status in (401, 407) and self._retry_with_credentials(txn, msg):
            return
        if dialog is not None:
            dialog.response = msg
            if msg.status >= 300:
                dialog.state = "terminated"
            else:
                self._on_invite_2xx(txn, msg)

    def _on_invite_2xx(self, txn: _ClientTxn, msg: SipMessage) -> None:
        """ACK every 2xx end to end (RFC 3261 13.2.2.4): the first confirms the dialog, a
        copy is re-ACKed, a 2xx from another fork is ACKed and ended with BYE."""
        dialog = txn.req.dialog
        if dialog.state == "confirmed" and msg.to_tag == dialog.remote_tag:
            ack_text = dialog._acks.get(txn.cseq)
            if ack_text is None:  # the 2xx of a re-INVITE: ACKed with the re-INVITE's CSeq
                ack = dialog._request("ACK")
                dialog._acks[txn.cseq] = self._send_request(ack, txn.cseq, track=False).message.raw
            else:                 # a retransmitted 2xx
                self._send_quietly(ack_text)
            return
        leg = dialog
        if dialog.state == "confirmed":
            leg = Dialog(self, "uac", dialog.call_id, dialog.local_header, msg.header("To"))
            leg.local_cseq = dialog.local_cseq
        leg.remote_header = msg.header("To")
        leg.remote_tag = msg.to_tag
        contact = msg.header("Contact")
        if contact:
            leg.remote_target = uri_of(contact)
        leg.route_set = list(reversed(msg.header_all("Record-Route")))
        leg.remote_sdp = msg.body
        leg.state = "confirmed"
        # A delayed offer (INVITE without SDP) is answered in the ACK.
        ack_body = webrtc_sdp(answer=True) if (not dialog.local_sdp and msg.body) else ""
        if ack_body:
            leg.local_sdp = ack_body
        ack = leg._request("ACK", body=ack_body, content_type="application/sdp")
        leg._acks[txn.cseq] = self._send_request(ack, txn.cseq, track=False).message.raw
        if leg is not dialog or dialog.cancelled:
            self._send_request(leg._request("BYE"))
            leg.state = "terminated"
        else:
            self._dialogs[(dialog.call_id, dialog.local_tag)] = dialog

    def _on_request(self, msg: SipMessage) -> None:
        method = msg.method
        if method == "ACK":
            for inv in self._server_invites:
                if (inv.request.call_id == msg.call_id and inv.request.cseq[0] == msg.cseq[0]
                        and msg.to_tag == inv.to_tag):
                    inv.ack.set()
            return
        if method == "CANCEL":
            self._on_cancel(msg)
            return
        if msg.to_tag:
            self._on_in_dialog(msg)
            return
        if method == "INVITE":
            for inv in self._server_invites:
                if (inv.request.call_id == msg.call_id and inv.request.branch == msg.branch
                        and inv.request.cseq == msg.cseq):
                    if inv.last_response:  # a retransmission: repeat the last answer
                        self._send_quietly(inv.last_response)
                    return
            inv = _ServerInvite(msg, _token())
            self._server_invites.append(inv)
            if self.trying:
                inv.last_response = self._response(msg, 100, "Trying")
                self._send_quietly(inv.last_response)
        elif method in ("OPTIONS", "MESSAGE", "NOTIFY"):
            self._send_quietly(self._response(msg, 200, "OK", _token(), [("Allow", ALLOW)]))
        elif method in ("BYE", "INFO"):
            self._send_quietly(self._response(msg, 481, "Call/Transaction Does Not Exist", _token()))
        else:
            self._send_quietly(self._response(msg, 405, "Method Not Allowed", _token(), [("Allow", ALLOW)]))

    def _on_cancel(self, msg: SipMessage) -> None:
        for inv in self._server_invites:
            req = inv.request
            if req.call_id == msg.call_id and req.branch == msg.branch and req.cseq[0] == msg.cseq[0]:
                self._send_quietly(self._response(msg, 200, "OK", inv.to_tag))
                if inv.state == "proceeding":
                    inv.state = "cancelled"
                    inv.last_response = self._response(req, 487, "Request Terminated", inv.to_tag)
                    self._send_quietly(inv.last_response)
                return
        self._send_quietly(self._response(msg, 481, "Call/Transaction Does Not Exist", _token()))

    def _on_in_dialog(self, msg: SipMessage) -> None:
        dialog = self._dialogs.get((msg.call_id, msg.to_tag))
        if dialog is None or dialog.state == "terminated":
            self._send_quietly(self._response(msg, 481, "Call/Transaction Does Not Exist"))
        elif msg.method == "BYE":
            dialog.state = "terminated"
            self._send_quietly(self._response(msg, 200, "OK"))
        elif msg.method in ("INVITE", "UPDATE"):  # re-offer (refresh or hold): keep our session
            self._send_quietly(self._response(
                msg, 200, "OK", headers=[("Contact", self._dialog_contact()), ("Allow", ALLOW)],
                body=dialog.local_sdp, content_type="application/sdp"))
        elif msg.method in ("INFO", "MESSAGE", "NOTIFY", "OPTIONS"):
            self._send_quietly(self._response(msg, 200, "OK"))
        else:
            self._send_quietly(self._response(msg, 405, "Method Not Allowed", headers=[("Allow", ALLOW)]))
