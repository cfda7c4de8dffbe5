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
import urllib.request

import pytest

from tests.support.browser import ROOT
# the same real rtpengine and media-adapting proxy as the media tests
from tests.proxy.test_media import media_proxy, rtpengine, site  # noqa: F401

pytestmark = pytest.mark.usefixtures("quiet_log")   # normal traffic: no ERROR line


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
    # the API's own paths are unchanged
    assert fetch(base + "/api/v1/health")[0] == 200
    assert fetch(base + "/api/v1/users/1000/device")[0] == 401
    assert fetch(base + "/nothing.js")[0] == 404
