"""Fixtures of the tests against a real Redis: the server, and the API application in this
process on it (tests/support/apicall)."""
from tests.support.apicall import call, env  # noqa: F401
from tests.support.redisfixtures import r, redis_server, redis_url  # noqa: F401
