"""Contract section 9's protection of the API's credentials, against real proxies (API
servers) on one Redis: failed authentications blocked per source address and never per
account, the block shared by every API server, the admin token protected the same way,
credentials refused over plain HTTP from another host when TLS is required, and CORS
credentials only for the configured origins. Other loopback addresses (127.0.0.61...)
stand in for other hosts."""
import base64
import http.client
import json
import ssl
import time
import urllib.parse

import pytest

from tests.support.proxy import TOKEN, Proxy
from tests.support.scrape import value

BLOCK_SECONDS = 3
LIMITED = {"UA_API_AUTH_FAILURES": "10", "UA_API_AUTH_BLOCK_SECONDS": str(BLOCK_SECONDS)}


def call(base, path, credentials=None, source="127.0.0.1", headers=None, raw=False):
    """(status, JSON body (raw: text), headers) of a GET from `source`. credentials:
    ("bearer", token) or (number, password)."""
    url = urllib.parse.urlsplit(base)
    if url.scheme == "https":
        conn = http.client.HTTPSConnection(url.hostname, url.port, timeout=5,
                                           source_address=(source, 0),
                                           context=ssl._create_unverified_context())
    else:
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=5,
                                          source_address=(source, 0))
    sent = dict(headers or {})
    if credentials and credentials[0] == "bearer":
        sent["Authorization"] = f"Bearer {credentials[1]}"
    elif credentials:
        sent["Authorization"] = "Basic " + base64.b64encode(
            ":".join(credentials).encode()).decode()
    try:
        conn.request("GET", path, headers=sent)
        resp = conn.getresponse()
        body = resp.read()
        if raw:
            return resp.status, body.decode(), resp.headers
        return resp.status, json.loads(body) if body else None, resp.headers
    finally:
        conn.close()


def blocked_total(proxy):
    return value(call(proxy.api_url, "/metrics", raw=True)[1], "ua_api_blocked_total")


def device(proxy, credentials, source, base=None):
    return call(base or proxy.api_url, "/api/v1/users/1000/device", credentials, source)


@pytest.fixture(scope="module")
def limited(redis_server, tmp_path_factory):
    """Two proxies of one cluster (one Redis), each with its API server, limiting failures."""
    proxies = [Proxy(redis_server.url, tmp_path_factory.mktemp(f"limited-{name}"),
                     node_id=f"limited-{name}", env=LIMITED).start() for name in "ab"]
    yield proxies
    for p in proxies:
        p.stop()


@pytest.fixture
def alice(limited, redis_url):
    limited[0].provision_user("1000", "ua", name="Alice")
    return limited


def test_failures_from_one_address_block_it_not_the_account(alice):
    a, b = alice
    blocked_before = blocked_total(a)
    for _ in range(10):
        assert device(a, ("1000", "guess"), "127.0.0.61")[0] == 401
    status, body, headers = device(a, ("1000", "secret"), "127.0.0.61")
    assert status == 429 and "error" in body, body
    assert 0 < int(headers["Retry-After"]) <= BLOCK_SECONDS
    # The same address on the other API server of the cluster: blocked too.
    assert device(b, ("1000", "secret"), "127.0.0.61")[0] == 429
    # Another address, the right password: the account is not locked.
    assert device(a, ("1000", "secret"), "127.0.0.62")[0] == 200
    assert blocked_total(a) == blocked_before + 1
    # The block ends.
    time.sleep(BLOCK_SECONDS + 0.5)
    assert device(a, ("1000", "secret"), "127.0.0.61")[0] == 200


def test_failures_shared_between_api_servers_count_toward_one_block(alice):
    a, b = alice
    for server in (a, b) * 5:
        assert device(server, ("1000", "guess"), "127.0.0.65")[0] == 401
    assert device(a, ("1000", "secret"), "127.0.0.65")[0] == 429


def test_failures_from_many_addresses_never_lock_the_account_out(alice):
    a, _ = alice
    start = a.log_path.stat().st_size
    for host in range(100, 120):                     # twenty other hosts, 3 guesses each
        for _ in range(3):
            assert device(a, ("1000", "wrong-guess"), f"127.0.0.{host}")[0] == 401
    assert device(a, ("1000", "secret"), "127.0.0.1")[0] == 200
    log = a.log_path.read_text(errors="replace")[start:]
    warnings = [line for line in log.splitlines() if "account 1000" in line]
    assert len(warnings) == 1 and "WARNING" in warnings[0], warnings   # once a minute
    assert "wrong-guess" not in log


def test_the_admin_token_is_protected_the_same_way(alice):
    a, _ = alice
    for _ in range(10):
        assert call(a.api_url, "/api/v1/users", ("bearer", "guess"), "127.0.0.64")[0] == 401
    status, _, headers = call(a.api_url, "/api/v1/users", ("bearer", TOKEN), "127.0.0.64")
    assert status == 429 and "Retry-After" in headers
    assert call(a.api_url, "/api/v1/users", ("bearer", TOKEN), "127.0.0.1")[0] == 200


@pytest.fixture(scope="module")
def tls_required(redis_server, tmp_path_factory):
    """Listening on 127.0.0.66, standing in for the host's own (public) address."""
    p = Proxy(redis_server.url, tmp_path_factory.mktemp("tls-required"), node_id="tls",
              listen="127.0.0.66",
              env={"UA_API_REQUIRE_TLS": "1", "UA_WS_ORIGINS": "https://uc.example"}).start()
    yield p
    p.stop()


@pytest.fixture
def tls_alice(tls_required, redis_url):
    tls_required.provision_user("1000", "ua", name="Alice")
    return tls_required


def test_credentials_over_plain_http_from_another_host_are_refused(tls_alice):
    p = tls_alice
    for credentials in (("1000", "secret"), ("1000", "wrong"), ("bearer", TOKEN)):
        status, body, _ = device(p, credentials, "127.0.0.63")
        assert (status, body) == (403, {"error": "use HTTPS"})      # right or wrong alike
    assert device(p, ("1000", "secret"), "127.0.0.63", base=p.api_https_url)[0] == 200
    # The host itself: from its loopback, or from the address the API listens on.
    assert device(p, ("1000", "secret"), "127.0.0.1")[0] == 200
    assert device(p, ("1000", "secret"), "127.0.0.66")[0] == 200
    # No credentials, nothing refused: health is for anyone.
    assert call(p.api_url, "/api/v1/health", None, "127.0.0.63")[0] == 200


def test_cors_credentials_only_for_the_configured_origins(tls_alice, proxy, redis_url):
    p = tls_alice
    listed = {"Origin": "https://uc.example"}
    _, _, headers = call(p.api_url, "/api/v1/health", headers=listed)
    assert headers.get("access-control-allow-origin") == "https://uc.example"
    assert headers.get("access-control-allow-credentials") == "true"
    _, _, headers = call(p.api_url, "/api/v1/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in headers
    # Any origin (UA_WS_ORIGINS unset): answered, a wildcard, never with credentials.
    proxy.provision_user("1000", "ua", name="Alice")
    status, _, headers = call(proxy.api_url, "/api/v1/users/1000/device", ("1000", "secret"),
                              headers={"Origin": "https://elsewhere.example"})
    assert status == 200
    assert headers.get("access-control-allow-origin") == "*"
    assert "access-control-allow-credentials" not in headers
