"""The API server's application (lib/web) in this process, on the test Redis: requests
go through the whole ASGI stack (middleware, routing, validation, error handlers) with
Starlette's test client, without a socket. The running server is tested through
tests/support/proxy.py."""
import base64
import json
import time
from dataclasses import dataclass

import pytest
from starlette.testclient import TestClient

from lib import config
from lib.web.app import create_app

TOKEN = "test-token-0123456789"
DOMAIN = "ua.test"
ADMIN = {"authorization": f"Bearer {TOKEN}"}


def basic(number, password):
    raw = base64.b64encode(f"{number}:{password}".encode()).decode()
    return {"authorization": f"Basic {raw}"}


@dataclass
class Answer:
    status: int
    body: object          # parsed JSON, the text of another content type, None when empty
    headers: object       # case-insensitive
    content: bytes


def answer(response):
    ctype = response.headers.get("content-type", "")
    if not response.content:
        body = None
    elif ctype.startswith("application/json"):
        body = json.loads(response.content)
    else:
        body = response.text
    return Answer(response.status_code, body, response.headers, response.content)


class Clock:
    """The application's clock: now() unless a test sets `at`."""

    def __init__(self):
        self.at = None

    def __call__(self):
        return time.time() if self.at is None else self.at


def client(cfg, redis_client=None, clock=None):
    """Over HTTPS, as a client on another host must talk to an API that requires TLS."""
    return TestClient(create_app(cfg, redis_client, clock or Clock()),
                      base_url="https://testserver", raise_server_exceptions=False,
                      follow_redirects=True)


@pytest.fixture
def env(redis_url):
    # No block of failed authentications: these tests send wrong credentials on purpose,
    # all from one client (tests/proxy/test_api_security.py tests the block).
    return {"UA_REDIS_URL": redis_url, "UA_API_TOKEN": TOKEN, "UA_DOMAIN": DOMAIN,
            "UA_MEDIA": "passthrough", "UA_API_AUTH_FAILURES": "0"}


@pytest.fixture
def call(env):
    """call(method, path, body=None, headers=None, raw=None, env_over=None, now=None):
    an Answer. `raw` is sent as is (Content-Type application/json unless given)."""
    apps = {}
    clock = Clock()

    def do(method, path, body=None, headers=None, raw=None, env_over=None, now=None):
        key = tuple(sorted((env_over or {}).items()))
        if key not in apps:
            apps[key] = client(config.load({**env, **(env_over or {})}), clock=clock)
        if raw is None and body is not None:
            raw = json.dumps(body).encode()
        headers = dict(headers or {})
        if raw is not None and not any(k.lower() == "content-type" for k in headers):
            headers["content-type"] = "application/json"
        clock.at = now
        return answer(apps[key].request(method, path, content=raw, headers=headers))
    return do
