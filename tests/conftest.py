"""Shared fixtures: a real redis-server for the whole session, flushed for every test."""
import sys
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lib.store import clients  # noqa: E402
from tests.support.proxy import Proxy  # noqa: E402
from tests.support.redisproc import RedisProcess  # noqa: E402


def reset_store_client():
    """Forget lib/store/clients' per-process client so the next call reads UA_REDIS_URL again."""
    old, clients._client = clients._client, None
    if old is not None:
        try:
            old.close()
        except Exception:
            pass


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A redis-server on a free port, append-only, data in a temporary directory.
    Tests may stop() and start() it (same port, same data)."""
    srv = RedisProcess(str(tmp_path_factory.mktemp("redis")))
    srv.start()
    yield srv
    srv.cleanup()


@pytest.fixture
def redis_url(redis_server, monkeypatch):
    """URL of the (running, empty) test Redis; lib/store/clients.client() points at it."""
    if not redis_server.running:        # a previous test stopped it and failed
        redis_server.start()
    with redis.Redis.from_url(redis_server.url) as c:
        c.flushall()
    monkeypatch.setenv("UA_REDIS_URL", redis_server.url)
    reset_store_client()
    yield redis_server.url
    reset_store_client()


@pytest.fixture
def r(redis_url):
    """A plain client on the test Redis (bytes responses), for looking at raw state."""
    with redis.Redis.from_url(redis_url) as c:
        yield c


@pytest.fixture(scope="session", autouse=True)
def no_credentials_in_product_logs():
    """Contract section 9: after the whole run, no log of a proxy it started (Kamailio, the
    runner, the API server) holds a password, an HA1, a Basic credential or the token the
    tests gave it."""
    yield
    assert Proxy.credentials_in_logs() == []


pytest_plugins = ["tests.support.fixtures", "tests.support.apicall"]


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "log_errors(*patterns): the ERROR lines a test causes on purpose (regular "
        "expressions): quiet_log lets them through, and only them")
