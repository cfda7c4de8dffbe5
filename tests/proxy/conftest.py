"""Fixtures of the tests against real Kamailio: the session's proxy on the session's Redis,
the seed's site provisioned for each test, the log check; and, after the whole run, no
secret in any log a proxy wrote."""
import pytest

from tests.support.fixtures import proxy, quiet_log, site  # noqa: F401
from tests.support.proxy import Proxy
from tests.support.redisfixtures import r, redis_server, redis_url  # noqa: F401


@pytest.fixture(scope="session", autouse=True)
def no_credentials_in_product_logs():
    """Contract section 9: after the whole run, no log of a proxy it started (Kamailio, the
    runner, the API server) holds a password, an HA1, a Basic credential or the token the
    tests gave it."""
    yield
    assert Proxy.credentials_in_logs() == []
