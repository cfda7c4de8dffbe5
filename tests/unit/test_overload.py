"""lib/features/overload's decisions on plain values: levels with hysteresis, what each level
refuses, the /proc/net/udp reading, the status kept for the health endpoint."""
import pytest

from lib import config
from lib.features import overload

M = overload.Marks(queue_calls=0.2, queue_all=0.3, queue_low=0.03, shm_calls=0.6, shm_all=0.7,
                   shm_low=0.5)


def test_levels_rise_with_either_signal():
    assert overload.level(0, 0, 0.1, M) == (overload.NORMAL, None)
    assert overload.level(0, 0.25, 0.1, M)[0] == overload.CALLS
    assert overload.level(0, 0.3, 0.1, M)[0] == overload.ALL
    assert overload.level(0, 0, 0.65, M)[0] == overload.CALLS
    assert overload.level(0, 0, 0.7, M)[0] == overload.ALL
    level, reason = overload.level(0, 0, 0.65, M)
    assert reason == "shared memory 65% in use (high mark 60%)"


def test_hysteresis_keeps_shedding_until_every_signal_is_below_its_low_mark():
    # below the high marks but above a low mark: the level stays
    assert overload.level(overload.ALL, 0.1, 0.1, M)[0] == overload.ALL
    assert overload.level(overload.CALLS, 0, 0.55, M)[0] == overload.CALLS
    assert overload.level(overload.CALLS, 0.02, 0.45, M) == (overload.NORMAL, None)
    # the same readings from normal stay normal
    assert overload.level(overload.NORMAL, 0.1, 0.55, M) == (overload.NORMAL, None)


def test_a_mark_of_zero_turns_its_signal_off():
    off = overload.Marks(0, 0, 0, 0.6, 0.7, 0.5)
    assert overload.level(0, 1.0, 0.1, off) == (overload.NORMAL, None)
    assert overload.level(overload.CALLS, 1.0, 0.1, off) == (overload.NORMAL, None)


def test_invites_first_then_registers():
    assert not overload.sheds(None, False) and not overload.sheds(0, True)
    assert overload.sheds(overload.CALLS, False) and not overload.sheds(overload.CALLS, True)
    assert overload.sheds(overload.ALL, False) and overload.sheds(overload.ALL, True)


def test_retry_after_spreads_registers_only():
    assert overload.retry_after(False) == 1
    latest = overload.retry_after(True, rand=lambda low, high: high)
    assert latest == overload.REGISTER_RETRY_AFTER[1]


def test_marks_from_the_environment():
    m = overload.marks(20, 50)
    assert (m.queue_calls, m.queue_all, m.queue_low) == pytest.approx((0.2, 0.6, 0.025))
    assert (m.shm_calls, m.shm_all, m.shm_low) == pytest.approx((0.5, 0.6, 0.4))


PROC_NET_UDP = """\
   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  637: 0100007F:B85D 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 55724 2 00000000a5fa3c58 0
 1205: 1400007F:61E4 00000000:0000 07 00000000:00001000 00:00000000 00000000     0        0 165713 2 00000000d89b1251 0
11268: 0100007F:61E4 00000000:0000 07 00000000:0003A000 00:00000000 00000000     0        0 163609 2 000000006f1586f8 0
"""


def test_queue_of_the_listener_only():
    address = overload.udp_local_address("127.0.0.1", 25060)
    assert address == "0100007F:61E4"
    assert overload.udp_socket(PROC_NET_UDP, address) == (0x3A000, "163609")
    assert overload.udp_socket(PROC_NET_UDP, overload.udp_local_address("127.0.0.1", 5060)) is None
    assert overload.udp_local_address("::1", 5060) == "00000000000000000000000001000000:13C4"


def test_status_file_held_after_the_shedding_stops(tmp_path, monkeypatch):
    monitor = overload.Monitor(config.load({"UA_RUN_DIR": str(tmp_path)}), M)
    monkeypatch.setattr(monitor, "queue", lambda: 0.0)
    assert overload.status(tmp_path) is None
    level, reason, line = monitor.tick(0.65, now=100.0)
    assert level == overload.CALLS and "shedding new INVITEs" in line
    assert overload.status(tmp_path) == "overload: " + reason
    assert monitor.tick(0.1, now=100.1)[0] == overload.NORMAL
    assert overload.status(tmp_path) is not None        # held
    assert monitor.tick(0.1, now=100.2 + overload.HEALTH_HOLD_SECONDS) is None
    assert overload.status(tmp_path) is None


def test_entering_again_is_logged_at_most_every_few_seconds(tmp_path, monkeypatch):
    monitor = overload.Monitor(config.load({}), M)
    monkeypatch.setattr(monitor, "queue", lambda: 0)
    assert monitor.tick(0.65, now=0.0)[2] is not None
    assert monitor.tick(0.1, now=0.02)[0] == overload.NORMAL
    assert monitor.tick(0.65, now=0.04)[2] is None      # back within LOG_EVERY_SECONDS
    monitor.tick(0.1, now=0.06)
    assert monitor.tick(0.65, now=overload.LOG_EVERY_SECONDS + 1)[2] is not None


def test_buffer_use_of_a_socket_held_by_this_process():
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        address = overload.udp_local_address(*sock.getsockname())
        for _ in range(3):
            sock.sendto(b"x" * 500, sock.getsockname())
        with open("/proc/net/udp") as f:
            queued, inode = overload.udp_socket(f.read(), address)
        held = overload.listener_socket(inode)
        assert held is not None
        with held:
            size = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
            assert overload.buffer_use(held) == queued / size > 0
