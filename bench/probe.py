"""INVITE->180 response time, measured while SIPp loads the proxy: SIPp times responses in
whole milliseconds, too coarse for a proxy that adds well under one. This probe is a small
SIP UAC on the MDS's address that places calls one after another (INVITE, 180 timed with
perf_counter, 200, ACK, BYE) to registered users, at a low rate, beside the load.

With `history` (U only), it also measures the lag of call events (issue 24): after every
LAG_EVERY-th call's BYE, how long until the API's history of the callee shows the call,
from the moment the BYE was sent."""
import socket
import threading
import time
import uuid

from tests.support.sipmessage import SipMessage, split_list, uri_of


LAG_EVERY = 4          # 5 lag readings a second: the API's polling shares the proxy's core
LAG_POLL_SECONDS = 0.001
LAG_GIVE_UP_SECONDS = 2.0


class LatencyProbe:
    def __init__(self, local_ip, proxy_addr, callees, rate=20.0, history=None):
        """history(number): the call ids in that user's history, newest first (the API)."""
        self.local_ip = local_ip
        self.proxy_addr = proxy_addr
        self.callees = callees
        self.interval = 1.0 / rate
        self.history = history
        self.lags_ms = []
        self.lag_lost = 0       # calls the history had not shown after LAG_GIVE_UP_SECONDS
        self.latencies_ms = []
        self.failed = 0
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((self.local_ip, 0))
        self.sock.settimeout(2.0)
        self.port = self.sock.getsockname()[1]
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.sock.close()

    def _run(self):
        n = 0
        next_at = time.monotonic()
        while not self._stop.is_set():
            callee = self.callees[n % len(self.callees)]
            n += 1
            try:
                self.latencies_ms.append(self._call(callee, lag=self.history is not None
                                                    and n % LAG_EVERY == 0))
            except (OSError, ValueError, TimeoutError):
                self.failed += 1
            next_at += self.interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _send(self, text):
        self.sock.sendto(text.replace("\n", "\r\n").encode(), self.proxy_addr)

    def _wait(self, call_id, method, codes):
        """Responses of this call to `method` until one of each code in `codes` came (a
        multi-worker proxy may pass a 180 and a 200 in either order): {code: (message,
        perf_counter when it came)}."""
        seen = {}
        while len(seen) < len(codes):
            data, _ = self.sock.recvfrom(65535)
            msg = SipMessage(data, strict=False)
            if msg.is_response and msg.call_id == call_id and msg.cseq_method == method \
                    and msg.status in codes:
                seen.setdefault(msg.status, (msg, time.perf_counter()))
        return seen

    def _call(self, callee, lag=False):
        call_id = f"probe-{uuid.uuid4().hex}"
        host = f"{self.local_ip}:{self.port}"
        proxy = f"{self.proxy_addr[0]}:{self.proxy_addr[1]}"
        sdp = (f"v=0\no=- 1 1 IN IP4 {self.local_ip}\ns=-\nc=IN IP4 {self.local_ip}\nt=0 0\n"
               "m=audio 40000 RTP/AVP 0\na=rtpmap:0 PCMU/8000\n")
        head = (f"From: <sip:4000@{host}>;tag=p{call_id[-8:]}\nCall-ID: {call_id}\n"
                "Max-Forwards: 70\n")
        start = time.perf_counter()
        self._send(f"INVITE sip:{callee}@{proxy} SIP/2.0\n"
                   f"Via: SIP/2.0/UDP {host};branch=z9hG4bK{uuid.uuid4().hex};rport\n"
                   f"{head}To: <sip:{callee}@{proxy}>\nCSeq: 1 INVITE\n"
                   f"Contact: <sip:4000@{host}>\nContent-Type: application/sdp\n"
                   f"Content-Length: {len(sdp.replace(chr(10), chr(13) + chr(10)))}\n\n{sdp}")
        seen = self._wait(call_id, "INVITE", {180, 200})
        latency = (seen[180][1] - start) * 1000
        ok = seen[200][0]
        # the route set: the 200's Record-Route in reverse order (RFC 3261 12.1.2)
        routes = [r for h in ok.header_all("Record-Route") for r in split_list(h)][::-1]
        route = f"Route: {', '.join(routes)}\n" if routes else ""
        target = uri_of(ok.header("Contact"))
        dialog = f"{head}To: {ok.header('To')}\n{route}"
        self._send(f"ACK {target} SIP/2.0\n"
                   f"Via: SIP/2.0/UDP {host};branch=z9hG4bK{uuid.uuid4().hex};rport\n"
                   f"{dialog}CSeq: 1 ACK\nContent-Length: 0\n\n")
        bye_sent = time.perf_counter()
        self._send(f"BYE {target} SIP/2.0\n"
                   f"Via: SIP/2.0/UDP {host};branch=z9hG4bK{uuid.uuid4().hex};rport\n"
                   f"{dialog}CSeq: 2 BYE\nContent-Length: 0\n\n")
        self._wait(call_id, "BYE", {200})
        if lag:
            self._lag(callee, call_id, bye_sent)
        return latency

    def _lag(self, callee, call_id, since):
        while time.perf_counter() - since < LAG_GIVE_UP_SECONDS:
            if call_id in self.history(callee):
                self.lags_ms.append((time.perf_counter() - since) * 1000)
                return
            time.sleep(LAG_POLL_SECONDS)
        self.lag_lost += 1
