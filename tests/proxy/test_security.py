"""Attacks on the SIP side (issue 9, contract section 11): a replayed Authorization and a
flood from one source address, against the real proxy. Wrong passwords, another user's
AOR, toll fraud and forged API tokens are in test_unique_account.py, test_api.py and
test_metrics.py."""
import base64
import socket
import struct
import time
import uuid

from lib.decisions import digest
from tests.support.fixtures import MDS_IP, provision_site
from tests.support.proxy import Proxy
from tests.support.sipmessage import SipMessage
from tests.support.udpclient import UdpClient
from tests.support.scrape import scrape, value

ATTACKER_IP = "127.0.0.43"


def replayed(client, line, method, user, ruri=None):
    """`line` (a captured Authorization) sent again verbatim in a new transaction."""
    resp, _ = client.transact(client.build(method, user, ruri=ruri, call_id=uuid.uuid4().hex,
                                           cseq=7, headers=[line]))
    return resp


def test_replayed_authorization_is_refused_and_counted(site):
    before = scrape(site)
    client = UdpClient(ATTACKER_IP, site.proxy.sip_addr, site.proxy.domain)
    resp, line = client.register("1000", "secret")
    assert resp.status == 200 and "nc=00000001" in line

    again = replayed(client, line, "REGISTER", "1000")
    assert again.status == 401, again
    fresh = client.authorization(again, "REGISTER", "", "1000", "secret")[1]
    assert fresh.split('nonce="')[1] != line.split('nonce="')[1], "a fresh nonce"

    # The same for a call: the INVITE's Proxy-Authorization replayed.
    ruri = f"sip:1001@{site.proxy.sip_addr}"
    challenge, _ = client.transact(client.build("INVITE", "1000", ruri=ruri))
    assert challenge.status == 407
    name, value_ = client.authorization(challenge, "INVITE", ruri, "1000", "secret")
    mds = site.mds_answer()
    first, _ = client.transact(client.build("INVITE", "1000", ruri=ruri,
                                            headers=[f"{name}: {value_}"]), timeout=5)
    assert first is not None and first.status not in (401, 407), first
    assert replayed(client, f"{name}: {value_}", "INVITE", "1000", ruri).status == 407
    mds.stop()
    client.close()

    after = scrape(site)
    assert value(after, "ua_auth_failures_total", kind="replay") \
        - value(before, "ua_auth_failures_total", kind="replay") == 2


def test_digest_replay_unit():
    nonce = base64.b64encode(struct.pack(">II", 1300, 1000) + b"x" * 21).decode()
    answer = f'Digest username="1000", nonce="{nonce}", nc=00000001, qop=auth'
    assert digest.replayed(answer, 1200)
    assert not digest.replayed(answer, 1400)                       # expired: merely stale
    assert not digest.replayed(answer.replace("00000001", "00000100"), 1200)   # nc > 255
    assert not digest.replayed('Digest nonce="not base64!"', 1200)


# --- flood protection ------------------------------------------------------------------

FLOOD_RATE, FLOOD_BLOCK_SECONDS = 50, 2


def burst(proxy, ip, count, seconds=1.0):
    """`count` keepalive OPTIONS from `ip` spread over `seconds`: the indexes answered."""
    client = UdpClient(ip, proxy.sip_addr, proxy.domain)
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)   # read at the end
    ids = [f"flood-{i}-{uuid.uuid4().hex[:8]}" for i in range(count)]
    started = time.monotonic()
    for i, call_id in enumerate(ids):
        client.send(client.build("OPTIONS", "flood", call_id=call_id))
        time.sleep(max(0.0, started + seconds * (i + 1) / count - time.monotonic()))
    answered = set()
    client.sock.settimeout(0.5)
    try:
        while True:
            answered.add(ids.index(SipMessage(client.sock.recv(65535)).call_id))
    except OSError:
        pass
    client.close()
    return answered


def test_flood_from_one_address_is_blocked_for_a_while(redis_url, tmp_path):
    proxy = Proxy(redis_url, tmp_path / "proxy", env={
        "UA_FLOOD_RATE": str(FLOOD_RATE), "UA_FLOOD_BLOCK_SECONDS": str(FLOOD_BLOCK_SECONDS)})
    proxy.start()
    try:
        provision_site(proxy, tmp_path)      # the MDS at 127.0.0.10
        site = type("S", (), {"proxy": proxy})
        before = scrape(site)

        answered = burst(proxy, "127.0.0.41", 500)
        # At most the rate in each of the (at most two) seconds the block started in,
        # then nothing at all until the block ends.
        assert FLOOD_RATE <= len(answered) <= 2 * FLOOD_RATE, len(answered)
        assert max(answered) < 2 * FLOOD_RATE + 1, sorted(answered)[-5:]
        assert burst(proxy, "127.0.0.41", 1) == set()                 # still blocked
        assert burst(proxy, "127.0.0.42", 20) == set(range(20))       # others are served
        assert burst(proxy, MDS_IP, 500) == set(range(500))           # an MDS is exempt
        dropped = 500 + 1 - len(answered)
        after = scrape(site)
        assert value(after, "ua_flood_blocked_total") \
            - value(before, "ua_flood_blocked_total") == dropped

        time.sleep(FLOOD_BLOCK_SECONDS)
        assert burst(proxy, "127.0.0.41", 5) == set(range(5))         # served again
    finally:
        proxy.stop()
