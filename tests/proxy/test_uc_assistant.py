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
from tests.support.fixtures import DESKPHONE_IP
from tests.support.sipp import free_port
# the same real rtpengine and media-adapting proxy as the media tests
from tests.proxy.test_media import media_proxy, rtpengine, site  # noqa: F401

pytestmark = pytest.mark.usefixtures("quiet_log")   # normal traffic: no ERROR line

DOCS = ROOT / "docs"


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

def test_the_keyboard_alone_answers_and_hangs_up_and_every_control_has_a_name(site, browser):
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
    tab.tab_to("Hang up")
    tab.key("Enter")
    outcome = mds.wait(15)
    assert outcome.ok, outcome.describe()
    assert outcome.received("BYE")
    tab.wait_text("#softphone .call .meta", r"^You hung up\.$")

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
