"""The reference UC Assistant page (issue 25, contract section 13) used as a person uses
it: real chromium on the page the API server serves, JsSIP over WSS to the real proxy,
rtpengine, SIPp as the MDS and as the deskphone. Clicks, typing and keys go to controls
found by their role and accessible name or their label (tests/support/assistant.py); what
the test checks is what the page shows, and what the proxy and the other side saw. The
screenshots of the README are written here, into docs/."""
import json
import re
import ssl
import subprocess
import time
import urllib.request

import pytest

from tests.support.assistant import Assistant
from tests.support.browser import ROOT
from tests.support.devices import wait_until
from tests.support.fixtures import DESKPHONE_IP, MDS_IP
from tests.support.sipp import free_port
from tests.proxy.test_browser_softphone import media_port, rtp_packets_by_protocol
# the same real rtpengine and media-adapting proxy as the media tests
from tests.proxy.test_media import media_proxy, rtpengine, site  # noqa: F401

pytestmark = pytest.mark.usefixtures("quiet_log")   # normal traffic: no ERROR line

DOCS = ROOT / "docs"
MDS_RTP_CALL = "tests/browser/mds_call_rtp_callee_hangs_up.xml"
ENOUGH = 50             # RTP packets: one second of 20 ms audio


@pytest.fixture
def browser(tmp_path):
    with Assistant(tmp_path) as b:
        yield b


def page_url(proxy):
    return proxy.api_https_url + "/"


def registered_deskphone(site):
    """1000's deskphone (SIPp) registered over UDP: the port its scenarios listen on."""
    port = free_port(DESKPHONE_IP)
    assert site.sipp("deskphone_register", DESKPHONE_IP, port,
                     keys={"password": "secret"}).run().received(200)
    return port


def audio_packets(tab):
    """(received, sent) RTP packets the page shows for its answered call."""
    meta = tab.text("#softphone .call[data-state=answered] .meta")
    found = re.search(r"audio: (\d+) packets received, (\d+) sent", meta)
    return (int(found.group(1)), int(found.group(2))) if found else (0, 0)


def history_row(tab, call_id, timeout=5.0):
    return tab.wait_text(f'#history tr[data-call-id="{call_id}"]', r"\S", timeout)


# --- the page's files ------------------------------------------------------------------

def test_the_committed_bundle_is_built_from_the_sources():
    done = subprocess.run(["node", "web/build.mjs", "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_the_device_reasons_in_words():
    script = ("import {deviceInWords} from './web/src/words.js';"
              "const v = (selected, effective, reason) => deviceInWords({selected, effective, reason});"
              "console.log(JSON.stringify([v('webrtc','webrtc','selected'),"
              "v('deskphone','deskphone','selected'), v('webrtc','deskphone','logged_out'),"
              "v('deskphone','webrtc','selected_unavailable'), v('webrtc',null,'none_registered')]))")
    done = subprocess.run(["node", "--input-type=module", "-e", script], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(done.stdout) == [
        "Calls ring this browser (UC Assistant): you selected it.",
        "Calls ring your deskphone: you selected it.",
        "Calls ring your deskphone: you are logged out of the UC Assistant.",
        "Calls ring this browser (UC Assistant): the deskphone you selected is not registered.",
        "Calls ring nowhere: neither your deskphone nor the UC Assistant is registered."]


def fetch(url, headers=None):
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE   # self-signed
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


@pytest.mark.parametrize("port", ["http", "https"])
def test_the_page_is_served_at_the_root_of_both_api_ports(site, port):
    proxy = site.proxy
    base = proxy.api_url if port == "http" else proxy.api_https_url
    status, headers, body = fetch(base + "/")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Cache-Control"] == "no-cache"
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert fetch(base + "/", {"If-None-Match": headers["ETag"]})[0] == 304
    page = body.decode()
    assert "<title>UC Assistant</title>" in page and "//" not in re.sub(r"<!--.*?-->", "", page, flags=re.S)
    for name, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
        version = re.search(rf'"{re.escape(name)}\?v=(\w+)"', page).group(1)
        status, headers, asset = fetch(f"{base}/{name}?v={version}")
        assert (status, headers["Content-Type"]) == (200, f"{kind}; charset=utf-8")
        assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert fetch(f"{base}/{name}")[1]["Cache-Control"] == "no-cache"
    assert asset == (ROOT / "web" / "style.css").read_bytes()
    status, _, body = fetch(base + "/config.json")
    assert json.loads(body) == {"domain": proxy.domain, "ws_port": int(proxy.env["UA_HTTP_PORT"]),
                                "wss_port": int(proxy.env["UA_HTTPS_PORT"]),
                                "voicemail_number": "*98"}
    # the address `make run` prints
    assert (f"UC Assistant (reference web page) at {proxy.api_https_url}/ and "
            f"{proxy.api_url}/") in proxy.log_since(0)
    # the API's own paths are unchanged
    assert fetch(base + "/api/v1/health")[0] == 200
    assert fetch(base + "/api/v1/users/1000/device")[0] == 401
    assert fetch(base + "/nothing.js")[0] == 404


# --- a person uses it --------------------------------------------------------------------

def test_log_in_answer_with_media_hang_up_and_see_the_history_live(site, rtpengine, browser):
    proxy = site.proxy
    tab = browser.tab("a", page_url(proxy))
    tab.login("1000", "secret")
    tab.eval("window.sameLoad = true")      # gone if anything reloads the page
    device = proxy.device("1000")
    assert (device["registered"]["webrtc"], device["effective"]) == (True, "webrtc")
    assert tab.text("#device-effective") == "Calls ring this browser (UC Assistant): you selected it."
    assert tab.act({"label": "UC Assistant (this browser)"}, "isChecked")

    mds = site.sipp(MDS_RTP_CALL, MDS_IP, free_port(MDS_IP), keys={"service": "1000"},
                    timeout=60, extra_args=["-mp", str(media_port(MDS_IP))]).start()
    tab.wait_text("#softphone .call[data-state=ringing] .title", r"^Incoming call from ")
    tab.screenshot(DOCS / "uc-assistant-incoming-call.png")
    tab.click("button", "Answer", within="#softphone")
    assert wait_until(lambda: min(audio_packets(tab)) >= ENOUGH, 10), audio_packets(tab)
    call_id = mds.wait_for(200, timeout=1)[0].call_id
    relayed = rtp_packets_by_protocol(rtpengine, call_id)
    assert relayed["RTP/AVP"] >= ENOUGH and relayed["UDP/TLS/RTP/SAVPF"] >= ENOUGH, relayed
    tab.click("button", "Hang up", within="#softphone")
    outcome = mds.wait(15)
    assert outcome.ok, outcome.describe()
    assert outcome.received("BYE")
    tab.wait_text("#softphone .call .meta", r"^You hung up\.$")

    row = history_row(tab, call_id)
    assert re.fullmatch(r"[^\t]+\t↙ In\t[^\t]+\tUC Assistant\tAnswered, \d+:\d\d", row), row

    # The seed: a call placed from the deskphone while logged in shows in the history.
    mds = site.mds_answer()
    placed = site.sipp("deskphone_call", DESKPHONE_IP, talk_ms=500, keys={
        "service": "2000", "user": "1000", "password": "secret"}).run()
    assert placed.ok, placed.describe()
    assert mds.wait(10).ok
    row = history_row(tab, placed.sent("INVITE")[0].call_id)
    assert re.fullmatch(r"[^\t]+\t↗ Out\t2000\tDeskphone\tAnswered, \d+:\d\d", row), row
    assert tab.eval("window.sameLoad") is True
    tab.screenshot(DOCS / "uc-assistant-logged-in.png")


def test_the_deskphone_selected_in_the_menu_is_controlled_from_the_page(site, browser):
    proxy = site.proxy
    desk_port = registered_deskphone(site)
    tab = browser.tab("a", page_url(proxy))
    tab.login("1000", "secret")
    tab.act({"label": "Deskphone"}, "click")
    tab.wait_text("#device-effective", r"^Calls ring your deskphone: you selected it\.$")
    assert proxy.device("1000")["selected"] == "deskphone"
    assert tab.text("#dial-call") == "Call from the deskphone"

    # The next call rings the deskphone, not the page; the page's calls list shows it
    # ringing, and its Answer offers it again to the deskphone with the auto-answer hints.
    desk = site.sipp("deskphone_ring_autoanswer", DESKPHONE_IP, desk_port, timeout=30).start()
    mds = site.mds_calls("1000", talk_ms=1000, timeout=30).start()
    tab.wait_text("#calls li .what", r"^From \S+: ringing on the deskphone$")
    tab.screenshot(DOCS / "uc-assistant-deskphone.png")
    tab.click("button", "Answer", within="#calls")
    caller = mds.wait(15)
    assert caller.ok, caller.describe()
    finals = [r.status for r in caller.received_responses()
              if r.cseq_method == "INVITE" and r.status >= 200]
    assert finals[0] == 200 and 487 not in finals, finals
    phone = desk.wait(10)
    assert phone.ok, phone.describe()
    first, again = phone.received("INVITE")
    assert (first.header("Answer-Mode"), again.header("Answer-Mode")) == (None, "Auto")
    assert again.call_id == first.call_id == caller.sent("INVITE")[0].call_id
    row = history_row(tab, first.call_id)
    assert re.fullmatch(r"[^\t]+\t↙ In\t[^\t]+\tDeskphone\tAnswered, \d+:\d\d", row), row
    assert tab.act({"css": "#softphone .call"}, "count") == 0       # the page stayed silent
    assert tab.visible("#calls-empty")

    # Click-to-dial from the dial pad: the deskphone gets the control INVITE, with the
    # auto-answer hints and the destination as the caller (this one refuses it).
    desk = site.sipp("deskphone_reject", DESKPHONE_IP, desk_port,
                     keys={"code": "486", "reason": "Busy Here"}).start()
    for digit in "2000":
        tab.click("button", digit, within=".keypad")
    tab.click("button", "Call from the deskphone")
    phone = desk.wait(10)
    assert phone.ok, phone.describe()
    invite = phone.received("INVITE")[0]
    assert invite.header("Answer-Mode") == "Auto"
    assert invite.header("From").startswith(f'"2000" <sip:2000@{proxy.domain}>')
    tab.wait_text("#notice", r"^Your deskphone rings")
    # The voicemail button calls it from the selected device: the deskphone, by click-to-dial.
    desk = site.sipp("deskphone_reject", DESKPHONE_IP, desk_port,
                     keys={"code": "486", "reason": "Busy Here"}).start()
    tab.click("button", "Call voicemail")
    phone = desk.wait(10)
    assert phone.ok, phone.describe()
    invite = phone.received("INVITE")[0]
    assert invite.header("Answer-Mode") == "Auto"
    assert invite.header("From").startswith(f'"*98" <sip:*98@{proxy.domain}>')
    tab.wait_text("#notice", r"^Your deskphone rings: it calls your voicemail once picked up\.$")

    tab.act({"label": "UC Assistant (this browser)"}, "click")
    tab.wait_text("#device-effective", r"^Calls ring this browser \(UC Assistant\)")
    assert proxy.device("1000")["selected"] == "webrtc"


def test_waiting_messages_show_live_and_the_voicemail_button_calls_it(site, rtpengine, browser):
    tab = browser.tab("a", page_url(site.proxy))
    tab.login("1000", "secret")
    assert site.mds_calls("1000", scenario="mds_mwi_notify").run().ok
    tab.wait_text("#voicemail-count", r"^2 new messages, 0 old messages\.$")

    mds = site.mds_answer()
    tab.click("button", "Call voicemail")
    tab.wait_text("#softphone .call .title", r"^In call with ")
    invite = mds.wait_for("INVITE", timeout=5)[0]
    assert invite.ruri.startswith(f"sip:*98@{MDS_IP}:"), invite.ruri
    tab.click("button", "Hang up", within="#softphone")
    outcome = mds.wait(10)
    assert outcome.ok, outcome.describe()


def test_the_keyboard_alone_answers_mutes_and_hangs_up_and_every_control_has_a_name(
        site, browser):
    proxy = site.proxy
    tab = browser.tab("a", page_url(proxy))
    found = tab.unnamed_controls()
    assert found["controls"] == 3 and found["unnamed"] == [], found      # the login form
    tab.login("1000", "secret")
    found = tab.unnamed_controls()
    assert found["controls"] >= 20 and found["unnamed"] == [], found

    mds = site.mds_calls("1000", scenario="mds_call_remote_bye", timeout=30).start()
    tab.wait_text("#softphone .call[data-state=ringing] .title", r"^Incoming call from ")
    found = tab.unnamed_controls()
    assert found["unnamed"] == [], found
    tab.tab_to("Answer")
    tab.key("Enter")
    tab.wait_text("#softphone .call .title", r"^In call with ")
    tab.tab_to("Mute")
    tab.key("Enter")
    tab.wait_text("#softphone .call .meta", r" · muted")
    assert tab.focused()["name"] == "Unmute"
    tab.tab_to("Hang up")
    tab.key("Enter")
    outcome = mds.wait(15)
    assert outcome.ok, outcome.describe()
    assert outcome.received("BYE")
    tab.wait_text("#softphone .call .meta", r"^You hung up\.$")

    # Declined (by a click this time): the caller gets 603, the proxy's busy rule.
    mds = site.mds_calls("1000", scenario="mds_call_expect_error", timeout=30).start()
    tab.wait_text("#softphone .call[data-state=ringing] .title", r"^Incoming call from ")
    tab.click("button", "Decline", within="#softphone")
    outcome = mds.wait(15)
    assert outcome.ok and outcome.last_final("INVITE").status == 603, outcome.describe()
    tab.wait_text("#softphone .call .meta", r"^Declined\.$")

    tab.tab_to("Log out")
    tab.key("Enter")
    tab.wait_text("#notice", r"^Logged out: calls ring your deskphone\.$")
    assert tab.visible("#login")
    assert wait_until(lambda: not proxy.device("1000")["registered"]["webrtc"], 2)


def test_closing_the_tab_rings_the_deskphone_and_a_colleague_sees_it(site, browser):
    proxy = site.proxy
    proxy.provision_user("1001", "ua", mds="mds1", name="Bob")
    desk_port = registered_deskphone(site)
    alice = browser.tab("alice", page_url(proxy))
    alice.login("1000", "secret")
    bob = browser.tab("bob", page_url(proxy))
    bob.login("1001", "secret")
    bob.fill("Colleague's number", "1000")
    bob.click("button", "Watch")
    alice_row = '#colleagues li[data-number="1000"] .state'
    bob.wait_text(alice_row, r"^Available \(UC Assistant\)$")

    # The seed's fallback: the tab closes without logging out; a call one second later
    # rings the deskphone, and the colleague sees it ring, then in use.
    desk = site.sipp("deskphone_answer", DESKPHONE_IP, desk_port, ring_ms=2000,
                     timeout=30).start()
    alice.close()
    time.sleep(1)
    mds = site.mds_calls("1000", talk_ms=2000, timeout=30).start()
    bob.wait_text(alice_row, r"^Ringing \(Deskphone\)$", timeout=3)
    bob.wait_text(alice_row, r"^In use \(Deskphone\)$", timeout=4)
    outcome = mds.wait(15)
    assert outcome.ok, outcome.describe()
    assert desk.wait(10).received("INVITE")[0].call_id == outcome.sent("INVITE")[0].call_id
    assert proxy.device("1000")["reason"] == "logged_out"
    bob.wait_text(alice_row, r"^Available \(Deskphone\)$", timeout=3)


def test_errors_are_shown_in_words(site, tmp_path):
    proxy = site.proxy
    with Assistant(tmp_path, microphone=False) as browser:
        tab = browser.tab("a", page_url(proxy))
        tab.fill("Number", "1000")
        tab.fill("SIP password", "wrong")
        tab.click("button", "Log in")
        tab.wait_text("#error", r"^Wrong number or password\.$")
        assert not tab.visible("#app")

        # The SIP WebSocket unreachable: the page says which, and what may help.
        other = browser.tab("b", page_url(proxy))
        other.refuse_websockets()
        other.fill("Number", "1000")
        other.fill("SIP password", "secret")
        other.click("button", "Log in")
        other.wait_text("#error", rf"^The proxy's SIP WebSocket \({proxy.wss_url}\) is "
                                  r"unreachable\. With a self-signed certificate, open ", 15)
        assert not other.visible("#app")
        other.close()

        # Over plain HTTP from a name that is not the host itself, no browser would give
        # the page a microphone: it says where to go instead.
        insecure = browser.tab("c", proxy.api_url.replace("127.0.0.1", "insecure.test") + "/")
        insecure.wait_text("#error", r"^Browsers give the microphone to secure pages only: "
                                     r"open this page with https://")
        insecure.close()

        # This browser refuses the microphone: the call it was to answer fails, in words.
        tab.login("1000", "secret")
        mds = site.mds_calls("1000", scenario="mds_call_expect_error", timeout=30).start()
        tab.wait_text("#softphone .call[data-state=ringing] .title", r"^Incoming call from ")
        tab.click("button", "Answer", within="#softphone")
        tab.wait_text("#error", r"^The browser refused the microphone")
        assert mds.wait(15).ok

        # The proxy unreachable: the page says so instead of going blank.
        tab.abort_requests("**/api/v1/**")
        tab.fill("Colleague's number", "1001")
        tab.click("button", "Watch")
        tab.wait_text("#error", r"^The proxy is unreachable")
