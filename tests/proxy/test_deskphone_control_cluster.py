"""Deskphone control through a second proxy of a cluster (contract section 12): the
deskphone (baresip) is registered over TCP on proxy A, the UC Assistant's requests go to
proxy B, whose API server passes an action on a call A holds to A's API server."""
import pytest

from tests.proxy.test_scale_out import cluster  # noqa: F401 (a fixture)
from tests.support.baresip import Baresip
from tests.support.control import USER, calls, wait_for
from tests.support.fixtures import MDS_IP


@pytest.fixture
def tcp_deskphone(cluster, tmp_path):  # noqa: F811
    def make(answermode):
        a, b = cluster
        phone = Baresip(tmp_path / answermode, "1000", "secret", a.proxy.sip_addr, "tcp",
                        answermode=answermode)
        started.append(phone)
        phone.start()
        phone.wait_registered()
        assert b.proxy.select_device("1000", "deskphone")[1]["effective"] == "deskphone"
        return phone
    started = []
    yield make
    for phone in started:
        phone.stop()


def dial_through_the_other_proxy(cluster, tcp_deskphone):  # noqa: F811
    """Click-to-dial asked of proxy B for a deskphone on A: the call answered, the same
    call seen from both proxies; (phone, MDS, the call)."""
    a, b = cluster
    phone = tcp_deskphone("auto")
    mds = a.mds_answer()
    status, body, _ = b.proxy.api("POST", "/api/v1/users/1000/calls", {"destination": "2000"},
                                  auth=USER)
    assert status == 202, body
    call = wait_for(lambda: [c for c in calls(b.proxy) if c["state"] == "answered"],
                    timeout=10, what="answered call")[0]
    assert call["id"] == body["id"] and calls(a.proxy) == [call]     # one view from both proxies
    # the control leg and the deskphone's call both reached baresip over its connection
    assert [proto for proto, _ in phone.received("INVITE")] == ["TCP"]
    return phone, mds, call


def test_click_to_dial_through_the_other_proxy(cluster, tcp_deskphone):  # noqa: F811
    phone, mds, call = dial_through_the_other_proxy(cluster, tcp_deskphone)
    invite = mds.wait_for("INVITE", timeout=5)[0]
    assert invite.ruri.startswith(f"sip:2000@{MDS_IP}:")
    assert invite.header("P-Asserted-Identity") == "<sip:1000@ua.test>"
    phone.command("hangup")             # the deskphone ends its call: the MDS gets its BYE
    outcome = mds.wait(10)
    assert outcome.ok, outcome.describe()
    wait_for(lambda: calls(cluster[1].proxy) == [], timeout=10, what="the call gone")


def test_hang_up_through_the_other_proxy(cluster, tcp_deskphone):  # noqa: F811
    a, b = cluster
    phone, mds, call = dial_through_the_other_proxy(cluster, tcp_deskphone)
    status, body, _ = b.proxy.api("DELETE", f"/api/v1/users/1000/calls/{call['id']}", auth=USER)
    assert status == 204, body
    outcome = mds.wait(10)
    assert outcome.ok, outcome.describe()
    wait_for(lambda: "CALL_CLOSED" in phone.event_types()[-1:] and calls(b.proxy) == [],
             timeout=10, what="hang-up on baresip")
    assert a.proxy.api("DELETE", f"/api/v1/users/1000/calls/{call['id']}", auth=USER)[0] == 404


def test_declining_through_the_other_proxy(cluster, tcp_deskphone):  # noqa: F811
    a, b = cluster
    a.proxy.provision_user("1001", "sip", mds="mds1", name="Bob")
    phone = tcp_deskphone("manual")
    caller = a.mds_calls("1000", scenario="mds_call_expect_error").start()
    phone.wait_event("CALL_INCOMING")
    call = wait_for(lambda: [c for c in calls(b.proxy) if c["state"] == "ringing"],
                    timeout=10, what="ringing call")[0]
    status, body, _ = b.proxy.api("POST", f"/api/v1/users/1000/calls/{call['id']}/answer",
                                  auth=("1001", "secret"))
    assert status == 403, body
    assert b.proxy.api("DELETE", f"/api/v1/users/1000/calls/{call['id']}", auth=USER)[0] == 204
    outcome = caller.wait(15)
    assert outcome.ok, outcome.describe()
    assert outcome.last_final("INVITE").status == 603
