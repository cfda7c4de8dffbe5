"""A bare SIP-over-UDP client for the reliability and security tests: it builds requests,
times each transaction's final answer with perf_counter, and answers a digest challenge
(with tests/support/sipua's digest code), keeping the Authorization it sent so that a
test can replay it verbatim.

    c = UdpClient("127.0.0.43", proxy.sip_addr, proxy.domain)
    resp, ms = c.transact(c.build("REGISTER", "1000"))
    resp, line = c.register("1000", "secret")        # 401, then with credentials
"""
import socket
import time
import uuid

from tests.support.sipmessage import SipMessage
from tests.support.sipua import _challenges, _digest


class UdpClient:
    def __init__(self, local_ip, proxy_addr, domain):
        host, _, port = proxy_addr.rpartition(":")
        self.proxy = (host, int(port))
        self.domain = domain
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((local_ip, 0))
        self.local = f"{local_ip}:{self.sock.getsockname()[1]}"

    def close(self):
        self.sock.close()

    def build(self, method, user, ruri=None, call_id=None, cseq=1, headers=(), expires=600,
              contact=None):
        """A request from `user` (a REGISTER of its own AOR, else to `ruri`'s user);
        contact: the Contact header's value, by default this client's own address."""
        ruri = ruri or f"sip:{self.proxy[0]}:{self.proxy[1]}"
        to = f"<sip:{user}@{self.domain}>" if method == "REGISTER" else f"<{ruri}>"
        lines = [f"{method} {ruri} SIP/2.0",
                 f"Via: SIP/2.0/UDP {self.local};branch=z9hG4bK{uuid.uuid4().hex};rport",
                 "Max-Forwards: 70", f"From: <sip:{user}@{self.domain}>;tag={uuid.uuid4().hex[:8]}",
                 f"To: {to}", f"Call-ID: {call_id or uuid.uuid4().hex}", f"CSeq: {cseq} {method}",
                 f"Contact: {contact or f'<sip:{user}@{self.local}>'}"]
        if method == "REGISTER":
            lines.append(f"Expires: {expires}")
        lines += list(headers)
        return "\r\n".join(lines + ["Content-Length: 0", "", ""])

    def send(self, text):
        self.sock.sendto(text.encode(), self.proxy)

    def wait_final(self, call_id, cseq, timeout=2.0):
        """The final response to the request (Call-ID, CSeq number), None on timeout."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65535)
            except socket.timeout:
                return None
            msg = SipMessage(data, strict=False)
            if msg.is_response and msg.status >= 200 and msg.call_id == call_id \
                    and msg.cseq[0] == cseq:
                return msg
        return None

    def transact(self, text, timeout=2.0):
        """Send a request built by build(); (final response or None, milliseconds)."""
        msg = SipMessage(text)
        started = time.perf_counter()
        self.send(text)
        resp = self.wait_final(msg.call_id, msg.cseq[0], timeout)
        return resp, (time.perf_counter() - started) * 1000

    def authorization(self, challenge, method, ruri, user, password):
        """(header name, value) answering a 401/407 challenge."""
        name = "Proxy-Authorization" if challenge.status == 407 else "Authorization"
        return name, _digest(_challenges(challenge)[0], method, ruri, user, password)

    def answered_register(self, user, password, call_id=None, cseq=1, expires=600,
                          contact=None):
        """A REGISTER sent, and its 401 answered: (the REGISTER with credentials, not sent
        yet, or None when the first answer was no 401; that first answer; the credentials
        line)."""
        call_id = call_id or uuid.uuid4().hex
        first, _ = self.transact(self.build("REGISTER", user, call_id=call_id, cseq=cseq,
                                            expires=expires, contact=contact))
        if first is None or first.status != 401:
            return None, first, None
        ruri = f"sip:{self.proxy[0]}:{self.proxy[1]}"
        name, value = self.authorization(first, "REGISTER", ruri, user, password)
        line = f"{name}: {value}"
        return self.build("REGISTER", user, call_id=call_id, cseq=cseq + 1, headers=[line],
                          expires=expires, contact=contact), first, line

    def register(self, user, password, expires=600, contact=None):
        """REGISTER, answered challenge: (final response, the 'Name: value' credentials
        line sent)."""
        text, first, line = self.answered_register(user, password, expires=expires,
                                                   contact=contact)
        return (self.transact(text)[0] if text else first), line
