"""Calling the HTTP API's dispatcher directly (no Kamailio) on the test Redis, the way the
KEMI glue does: request in, rendered answer checked, Response out."""
import base64
import json

import pytest

from lib import api, config

TOKEN = "test-token-0123456789"
DOMAIN = "ua.test"
ADMIN = {"authorization": f"Bearer {TOKEN}"}


def basic(number, password):
    raw = base64.b64encode(f"{number}:{password}".encode()).decode()
    return {"authorization": f"Basic {raw}"}


@pytest.fixture
def env(redis_url):
    return {"UA_REDIS_URL": redis_url, "UA_API_TOKEN": TOKEN, "UA_DOMAIN": DOMAIN,
            "UA_MEDIA": "passthrough"}


@pytest.fixture
def call(env):
    """call(method, path, body=None, headers=None, raw=None, env_over=None, **ctx)."""
    def do(method, path, body=None, headers=None, raw=None, env_over=None, **ctx_kwargs):
        cfg = config.load({**env, **(env_over or {})})
        if raw is None:
            raw = b"" if body is None else json.dumps(body).encode()
        req = api.Request.from_raw(method, path, headers or {}, raw)
        resp = api.handle(req, api.Context(cfg=cfg, **ctx_kwargs))
        # Every answer must serialise for xhttp: JSON that parses back, or text as is.
        status, reason, ctype, text, hdrs = api.render(resp)
        assert reason
        if ctype == api.JSON_TYPE:
            if resp.body is not None:
                assert json.loads(text) == resp.body
        else:
            assert text == resp.body
        return resp
    return do
