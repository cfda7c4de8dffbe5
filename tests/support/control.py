"""Helpers of the deskphone control tests (contract section 12)."""
import time

USER = ("1000", "secret")       # user 1000's own credentials, as the UC Assistant sends them


def wait_for(check, timeout=5, what="condition"):
    """check()'s first true value, polled; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.05)
    return found


def calls(proxy, number="1000", auth=USER):
    """The user's calls in progress, as the API lists them."""
    status, body, _ = proxy.api("GET", f"/api/v1/users/{number}/calls", auth=auth)
    assert status == 200, body
    return body
