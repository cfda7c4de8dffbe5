"""Redis high availability (issue 8, part 3): the proxy finds its Redis through Sentinel
and follows a failover by itself, while browsers register, device selections change and
the MDS calls. No acknowledged registration or selection is lost (the store waits for the
replica before acknowledging, lib/store/wire.acknowledged); calls fail only during the failover."""
import threading
import time

import pytest

from lib.features import registrar
from tests.support.fixtures import DESKPHONE_IP, MDS_IP, Site
from tests.support.proxy import Proxy
from tests.support.sentinel import MASTER_NAME, SentinelSet
from tests.support.sipp import Sipp, free_port
from tests.support.sipua import WsPhone

USERS = ("1000", "1001", "1002")
CALLEE = "2000"
RATE = 10          # calls per second from the MDS
CALLS = 180


@pytest.fixture
def ha(tmp_path):
    redis_set = SentinelSet(tmp_path / "redis")
    try:
        yield redis_set.start()
    finally:
        redis_set.stop()


@pytest.fixture
def site(ha, tmp_path):
    proxy = Proxy("", tmp_path / "proxy", env={"UA_REDIS_SENTINELS": ha.sentinels_env,
                                                "UA_REDIS_MASTER": MASTER_NAME})
    try:
        proxy.start()
        mds_port = free_port(MDS_IP)
        proxy.provision_mds("mds1", MDS_IP, mds_port)
        for number in USERS:
            proxy.provision_user(number, "ua", mds="mds1")
        proxy.provision_user(CALLEE, "sip", mds="mds1")
        yield Site(proxy, mds_port, tmp_path)
    finally:
        proxy.stop()


class Changes(threading.Thread):
    """Browsers re-registering and selections changing in a loop; remembers which of them
    were acknowledged (200) and which were not."""

    def __init__(self, site):
        super().__init__(daemon=True)
        self.site = site
        self.tabs = {}
        self.registered = {n: [] for n in USERS}    # (CSeq, acknowledged, time)
        self.selected = {n: [] for n in USERS}      # (device, acknowledged)
        self.done = threading.Event()

    def run(self):
        for number in USERS:
            tab = WsPhone(self.site.proxy.ws_url, number, "secret", self.site.proxy.domain)
            tab.connect()
            self.tabs[number] = tab
        turn = 0
        while not self.done.is_set():
            turn += 1
            for number, tab in self.tabs.items():
                answer = tab.register()
                self.registered[number].append((answer.cseq[0], answer.status == 200,
                                                time.time()))
                device = ("webrtc", "deskphone")[turn % 2]
                status = self.site.proxy.select_device(number, device)[0]
                self.selected[number].append((device, status == 200))

    def stop(self):
        """Stops changing; the browsers stay connected (a close would log them out)."""
        self.done.set()
        self.join(20)


def binding_cseq(master, number):
    contacts = registrar.decode(master.hgetall(f"ua:contacts:{{{number}}}").items())
    assert len(contacts) == 1, contacts
    return next(iter(contacts.values()))["cseq"]


def call_failures(result):
    """Times the failed calls' INVITEs were sent (epoch seconds), and the number of calls."""
    sent = {m.call_id: m.epoch for m in result.sent("INVITE")}
    answered = {m.call_id for m in result.received() if m.is_response and m.status == 200
                and m.cseq_method == "INVITE"}
    return sorted(t for call_id, t in sent.items() if call_id not in answered), len(sent)


@pytest.mark.parametrize("how", ["sentinel_failover", "master_killed"])
def test_failover_loses_no_acknowledged_change(ha, site, tmp_path, how):
    port = free_port(DESKPHONE_IP)
    assert site.sipp("deskphone_register", DESKPHONE_IP, port,
                     keys={"user": CALLEE, "password": "secret"}).run().received(200)
    desk = Sipp("deskphone_answer", local_ip=DESKPHONE_IP, local_port=port, calls=None,
                timeout=60, workdir=tmp_path, ring_ms=0).start()
    caller = Sipp("mds_call", remote=site.proxy.sip_addr, local_ip=MDS_IP,
                  local_port=free_port(MDS_IP), keys={"service": CALLEE}, calls=CALLS,
                  rate=RATE, talk_ms=50, timeout=CALLS / RATE + 20, workdir=tmp_path).start()
    changes = Changes(site)
    changes.start()
    time.sleep(5)

    old = ha.master_addr()
    began = time.time()
    if how == "sentinel_failover":
        ha.failover()
    else:
        ha.server_at(old).kill()
    ha.wait(lambda: ha.master_addr() != old, 20, "new master")
    if how == "master_killed":
        ha.server_at(old).start()       # back as a replica of the new master (Sentinel)
    ha.wait(ha.replica_online, 30, "replica of the new master online")
    settled = time.time()
    time.sleep(3)
    changes.stop()
    calls = caller.wait(CALLS / RATE + 30)
    desk.stop()

    failed, placed = call_failures(calls)
    window = failed[-1] - failed[0] + 1 / RATE if failed else 0
    refused = sorted(t for log in changes.registered.values() for _, ok, t in log if not ok)
    total = sum(len(log) for log in changes.registered.values())
    print(f"\n{how}: new master with its replica online after {settled - began:.2f} s; "
          f"{len(failed)} of {placed} calls failed, within {window:.2f} s; "
          f"{len(refused)} of {total} REGISTERs refused (503)"
          + (f" from {refused[0] - began:.2f} s to {refused[-1] - began:.2f} s" if refused else ""))
    assert placed == CALLS
    assert all(began - 1 < t < settled + 1 for t in failed), (began, settled, failed)

    with ha.master() as master:
        for number in USERS:
            acked = [cseq for cseq, ok, _ in changes.registered[number] if ok]
            assert binding_cseq(master, number) >= max(acked)
            attempts = changes.selected[number]
            last = max(i for i, (_, ok) in enumerate(attempts) if ok)
            stored = master.hget(f"ua:user:{{{number}}}", "device").decode()
            # the last acknowledged selection, or one tried (not acknowledged) after it
            assert stored in {device for device, _ in attempts[last:]}
    for tab in changes.tabs.values():
        tab.close()
