"""A real redis-server for a group of tests, flushed for every test."""
import pytest
import redis

from lib.store import clients
from tests.support.redisproc import RedisProcess


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
