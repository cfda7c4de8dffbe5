"""Malformed and hostile SIP against the real proxy (tests/support/bad_sip_corpus.py:
templates x mutations, several hundred requests), over UDP and TCP from 127.0.0.40 and a
subset over WebSocket. Per message the proxy must answer with a final 4xx (5xx only
503) or send nothing: never a 500, never a 2xx (except the unauthenticated OPTIONS
keepalive), so never a 2xx to an unauthenticated REGISTER or INVITE. Afterwards the
proxy still answers the OPTIONS keepalive and GET /api/v1/health, logged no Python
traceback ("ua: Traceback", the glue's guard) and Redis holds no new key.

Every violation is collected and reported at once, with the case name and what came
back, so that one run lists every failing message."""
import re
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from lib.store import keyspace
from tests.support.bad_sip_corpus import CORPUS, ws_subset
from tests.support.fixtures import DESKPHONE_IP
from tests.support.sipua import WsPhone
from tests.support.udpclient import UdpClient

SOURCE_IP = "127.0.0.40"
UDP_TIMEOUT = 0.3      # for a first answer; after a provisional, up to PROVISIONAL_WAIT
TCP_TIMEOUT = 0.5
WS_TIMEOUT = 0.5
PROVISIONAL_WAIT = 1.5
STATUS = re.compile(rb"(?m)^SIP/2\.0 (\d{3})[^\r\n]*")


def _statuses(data: bytes):
    return [(int(m.group(1)), m.group(0).decode("utf-8", "replace")) for m in STATUS.finditer(data)]


def _finished(statuses):
    return any(code >= 200 for code, _ in statuses)


def _params(proxy, proto, local, tag):
    cid = f"badsip-{tag}-{uuid.uuid4().hex[:12]}"
    return dict(dom=proxy.domain, host=proxy.sip_addr, local=local, proto=proto,
                cid=cid, branch="z9hG4bK" + uuid.uuid4().hex[:16])


def _answers(sock, read, timeout, done_on):
    """Status codes of what the proxy sends back on `sock` until a final answer, the peer
    is gone (one of `done_on`, or an empty read), or `timeout` (longer once a provisional
    came). read(sock) -> bytes."""
    received = b""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock.settimeout(remaining)
        try:
            chunk = read(sock)
        except done_on:
            break
        if not chunk:
            break
        received += chunk
        statuses = _statuses(received)
        if _finished(statuses):
            break
        if statuses:   # a provisional: give the final answer time to come
            deadline = max(deadline, time.monotonic() + PROVISIONAL_WAIT)
    return _statuses(received)


def send_udp(proxy, case):
    dest = (proxy.listen, proxy.sip_port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((SOURCE_IP, 0))
        local = f"{SOURCE_IP}:{sock.getsockname()[1]}"
        data = case.render(**_params(proxy, "UDP", local, "u"))
        try:
            sock.sendto(data, dest)
        except OSError as exc:          # e.g. larger than a datagram can be
            return [], f"not sent: {exc}"
        return _answers(sock, lambda s: s.recvfrom(65535)[0], UDP_TIMEOUT,
                        (socket.timeout, ConnectionRefusedError)), None


def send_tcp(proxy, case):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((SOURCE_IP, 0))
        sock.settimeout(2)
        sock.connect((proxy.listen, proxy.sip_port))
        local = f"{SOURCE_IP}:{sock.getsockname()[1]}"
        data = case.render(**_params(proxy, "TCP", local, "t"))
        try:
            sock.sendall(data)
        except OSError as exc:          # the proxy closed on us mid-message
            return [], f"send interrupted: {exc}"
        return _answers(sock, lambda s: s.recv(65535), TCP_TIMEOUT,
                        (socket.timeout, ConnectionResetError)), None


def send_ws(proxy, case):
    """One fresh connection per message: a fault that makes the proxy close the
    connection does not hide the next message's answer."""
    phone = WsPhone(proxy.ws_url, "1000", None, proxy.domain)
    phone.connect()
    try:
        params = _params(proxy, "WS", phone.via_host, "w")
        data = case.render(**params)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data    # bytes: sent as a binary frame
        try:
            phone.send_raw(text)
        except ConnectionError as exc:
            return [], f"not sent: {exc}"
        except Exception:
            pass           # sent; only the phone's own record of it failed to parse
        deadline = time.monotonic() + WS_TIMEOUT
        statuses = []
        while time.monotonic() < deadline and phone.connected:
            with phone._cond:
                statuses = [(m.status, f"SIP/2.0 {m.status} {m.reason}")
                            for m in phone.received if m.is_response]
            if _finished(statuses):
                break
            if statuses:
                deadline = max(deadline, time.monotonic() + PROVISIONAL_WAIT)
            time.sleep(0.01)
        return statuses, None
    finally:
        phone.drop(timeout=1)


def verdict(case, statuses):
    """None if the answers are acceptable, else why not."""
    finals = [(code, line) for code, line in statuses if code >= 200]
    for code, line in finals:
        if 400 <= code < 500 or code == 503:
            continue
        if 200 <= code < 300 and case.ok_2xx:
            continue
        return f"got {line!r}"
    if len(finals) > 1 and len({c for c, _ in finals}) > 1:
        return f"several different final answers: {[l for _, l in finals]}"
    return None


def run(proxy, cases, sender, transport, workers):
    results = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for case, (statuses, note) in zip(cases, pool.map(lambda c: sender(proxy, c), cases)):
            results[case.name] = (statuses, note)
    failures = []
    for case in cases:
        statuses, _ = results[case.name]
        why = verdict(case, statuses)
        if why:
            failures.append(f"[{transport}] {case.name}: {why}\n    message: {case.minimal()!r}")
    summary = {}
    for statuses, _ in results.values():
        finals = [c for c, _ in statuses if c >= 200]
        key = str(finals[0]) if finals else ("1xx-only" if statuses else "none")
        summary[key] = summary.get(key, 0) + 1
    return failures, summary


def options_keepalive(proxy):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((SOURCE_IP, 0))
        port = sock.getsockname()[1]
        cid = uuid.uuid4().hex
        msg = (f"OPTIONS sip:{proxy.domain} SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP {SOURCE_IP}:{port};branch=z9hG4bK{cid[:16]};rport\r\n"
               f"Max-Forwards: 70\r\nFrom: <sip:ping@{SOURCE_IP}>;tag={cid[:8]}\r\n"
               f"To: <sip:{proxy.domain}>\r\nCall-ID: {cid}\r\nCSeq: 1 OPTIONS\r\n"
               f"Content-Length: 0\r\n\r\n").encode()
        sock.sendto(msg, (proxy.listen, proxy.sip_port))
        sock.settimeout(2)
        data, _ = sock.recvfrom(65535)
        return _statuses(data)


def test_bad_sip_corpus(site, r):
    proxy = site.proxy
    assert len(CORPUS) >= 200
    ws_cases = ws_subset(CORPUS)
    assert len(ws_cases) >= 30
    keys_before = set(r.keys("*"))
    log_offset = proxy.log_path.stat().st_size
    started = time.monotonic()

    failures, summaries = [], {}
    for transport, sender, cases, workers in (("UDP", send_udp, CORPUS, 16),
                                              ("TCP", send_tcp, CORPUS, 16),
                                              ("WS", send_ws, ws_cases, 4)):
        fails, summary = run(proxy, cases, sender, transport, workers)
        failures += fails
        summaries[transport] = (len(cases), summary)
    corpus_time = time.monotonic() - started
    time.sleep(0.5)    # let the last requests finish in the proxy before looking at effects

    print(f"\nbad SIP corpus in {corpus_time:.1f} s")
    for transport, (size, summary) in summaries.items():
        print(f"  {transport}: {size} messages, first final answers {dict(sorted(summary.items()))}")

    # The proxy is still alive and well.
    try:
        keepalive = options_keepalive(proxy)
        if not keepalive or keepalive[-1][0] != 200:
            failures.append(f"OPTIONS keepalive after the corpus answered {keepalive}")
    except OSError as exc:
        failures.append(f"OPTIONS keepalive after the corpus: {exc!r}")
    status = proxy.api("GET", "/api/v1/health", auth=None)[0]
    if status != 200:
        failures.append(f"GET /api/v1/health after the corpus answered {status}")

    # No Python exception reached the glue's guard.
    with open(proxy.log_path, "rb") as log:
        log.seek(log_offset)
        new_log = log.read().decode("utf-8", "replace").splitlines()
    tracebacks = [line for line in new_log if "ua: Traceback" in line]
    for line in tracebacks[:20]:
        failures.append(f"traceback in the proxy log: {line[:2000]}")
    if len(tracebacks) > 20:
        failures.append(f"... {len(tracebacks)} tracebacks in all")

    # Nothing was stored: no registration, no other new key.
    new_keys = sorted(set(r.keys("*")) - keys_before)
    if new_keys:
        failures.append(f"new Redis keys after the corpus: {new_keys[:50]}")

    assert not failures, f"{len(failures)} problems:\n" + "\n".join(failures)


# --- Contacts the registrar cannot take: refused whole, nothing stored changes ----------

CONTACT_SOURCE_IP = "127.0.0.41"


def bindings(r, number="1000"):
    return r.hgetall(keyspace.contacts_key(number))


@pytest.fixture
def registered(site, r):
    """1000's deskphone registered over UDP: the bindings a bad REGISTER must leave as
    they are, byte for byte."""
    client = UdpClient(DESKPHONE_IP, site.proxy.sip_addr, site.proxy.domain)
    assert client.register("1000", "secret")[0].status == 200
    client.close()
    before = bindings(r)
    assert len(before) == 1
    return before


def test_a_contact_header_of_a_thousand_bindings_is_refused_not_read_as_absent(
        site, r, registered):
    """One Contact header listing 1,000 bindings (about 40 KB, over what Kamailio's
    pseudo-variables can hand to Python): a 4xx, never a 200 that answers it as a query."""
    client = UdpClient(CONTACT_SOURCE_IP, site.proxy.sip_addr, site.proxy.domain)
    contact = ", ".join(f"<sip:1000@{CONTACT_SOURCE_IP}:{10000 + i}>" for i in range(1000))
    start = site.proxy.log_size()
    answer, _ = client.register("1000", "secret", contact=contact)
    client.close()
    assert answer is not None and 400 <= answer.status < 500, answer
    assert bindings(r) == registered
    assert site.proxy.errors_since(start) == []


@pytest.mark.parametrize("contact", [
    "<sip:1000@@bad host:xx>", "<sip:1000@bad host>", "<sip:1000@127.0.0.41:xx>",
    "<sip:1000@127.0.0.41:70000>", "<sip:1000@[::1>", "<sip:@127.0.0.41>",
    "<sip:1000@127.0.0.41;bad param>", "<mailto:1000@127.0.0.41>"])
def test_a_malformed_contact_uri_gets_400_and_changes_nothing(site, r, registered, contact):
    client = UdpClient(CONTACT_SOURCE_IP, site.proxy.sip_addr, site.proxy.domain)
    start = site.proxy.log_size()
    answer, _ = client.register("1000", "secret", contact=contact)
    client.close()
    assert answer is not None and answer.status == 400, answer
    assert bindings(r) == registered
    assert site.proxy.errors_since(start) == []
