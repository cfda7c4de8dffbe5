"""The root of the tests: the repository on sys.path, and the markers. Fixtures live with
the group that needs them: tests/redis/conftest.py (a real Redis), tests/proxy/conftest.py
(real Kamailio and clients); tests/unit needs none."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "log_errors(*patterns): the ERROR lines a test causes on purpose (regular "
        "expressions): quiet_log lets them through, and only them")
