"""lib/features/callstate's call-event writes against a real Redis: waited for when a user of the
call has BLF watchers, posted (lib/store/wire.post) when nobody watches, and a watcher that
subscribed while a posted write was on its way served by the BLF timer (blf.late)."""
import time

import pytest
import redis

from lib.decisions.dialoginfo import parse_dialog_states
from lib.features import blf, callstate
from lib.store import keyspace, wire
from lib.users.provisioning import Provisioning
from tests.support.redisfixtures import reset_store_client

NOW = time.time()


@pytest.fixture(autouse=True)
def now():
    """Each test's clock starts with it: call entries expire by Redis's own clock
    (EXPIREAT), and a time taken when the module was imported is minutes old by the time
    the whole suite gets here, which expired the entries before the test could read them."""
    global NOW
    NOW = time.time()


@pytest.fixture
def redis_url(redis_url, monkeypatch):
    """Database 1 of the test Redis: the session's proxy, once started by another test,
    serves the BLF timer's list of database 0 every second and would empty it under
    these tests."""
    url = redis_url.rsplit("/", 1)[0] + "/1"
    with redis.Redis.from_url(url) as c:
        c.flushdb()
    monkeypatch.setenv("UA_REDIS_URL", url)
    reset_store_client()
    yield url
    reset_store_client()


@pytest.fixture
def carol(r):
    Provisioning(r, "127.0.0.1").put_user("2000", {"name": "Carol", "password": "s",
                                                    "line_type": "ua"})


def placed(call_id="c1"):
    """2000 places a call (in use whatever her devices): the write, posted if nobody
    watches; returns the users known watched."""
    party = callstate.Participants()
    party.calls["2000"] = callstate.new_call("out", "deskphone", "3000", NOW)
    return callstate.start(party, call_id, NOW)


def watch(number="2000"):
    sub = blf.new_subscription(number, "127.0.0.1", "w1", "<sip:1001@h>;tag=t", "tag",
                               "sip:1001@127.0.0.30", "sip:127.0.0.30", "udp:127.0.0.1:5060",
                               "<sip:1001@127.0.0.30>", [], 600, NOW)
    return blf.subscribe(sub, NOW)


def test_a_call_nobody_watches_is_posted_and_there_for_the_next_read(redis_url, carol,
                                                                       monkeypatch):
    assert placed(call_id="c0") == []           # "nobody watches" is in the cache now
    waited = []
    for name in ("run", "evalsha"):             # the ways of a write that waits for Redis
        waits = getattr(wire, name)
        monkeypatch.setattr(wire, name, lambda *a, waits=waits, **kw: (
            waited.append(a[0]), waits(*a, **kw))[1])
    assert placed() == []
    assert callstate.answer({"2000": callstate.new_call("out", "deskphone", "3000", NOW)},
                            "c1", NOW + 1) == []
    assert callstate.finish(["2000"], "c1", NOW + 5) == []
    assert waited == []
    monkeypatch.undo()
    assert wire.run(("LLEN", keyspace.history_key("2000"))) == [1]
    assert wire.run(("LLEN", keyspace.BLF_LATE_KEY)) == [0]


def test_a_watched_user_is_written_waiting_and_told_at_once(redis_url, carol):
    watch()
    assert placed() == ["2000"]
    assert callstate.finish(["2000"], "c1", NOW + 5) == ["2000"]
    assert wire.run(("LLEN", keyspace.BLF_LATE_KEY)) == [0]


def test_a_subscription_reaches_the_next_call_event_of_the_same_process(redis_url, carol):
    assert placed(call_id="c0") == []          # nobody watching: cached as such
    watch()                                    # a BLF key subscribes (any process)
    assert placed(call_id="c1") == ["2000"]


def test_a_watcher_the_cache_had_not_seen_is_notified_by_the_blf_timer(redis_url, carol,
                                                                         monkeypatch):
    assert parse_dialog_states(watch().body) == []      # nothing going on
    # the race: the watcher subscribed between this process's look at its cache and the
    # write reaching Redis
    monkeypatch.setattr(wire, "cached_script", lambda *args, **kw: (0,))
    assert placed() == []
    late = blf.late(NOW)
    assert [m.ruri for m in late] == ["sip:1001@127.0.0.30"]
    assert parse_dialog_states(late[0].body) == ["confirmed"]
    assert blf.late(NOW) == []                 # served once


def test_each_call_event_finds_a_watcher_the_cache_had_not_seen(redis_url, carol, monkeypatch):
    """The race above at every event of a call: the start's commands, and the answer and
    end scripts, each put the user on the BLF timer's list."""
    watch()
    monkeypatch.setattr(wire, "cached_script", lambda *args, **kw: (0,))

    def served():
        found = wire.run(("LRANGE", keyspace.BLF_LATE_KEY, 0, -1))[0]
        blf.late(NOW)
        return found
    party = callstate.Participants(callee="2000")
    party.calls["2000"] = callstate.new_call("in", "deskphone", "3000", NOW, 30)
    assert callstate.start(party, "c1", NOW) == [] and served() == [b"2000"]
    assert callstate.answer(party.calls, "c1", NOW + 1) == []
    assert served() == [b"2000"]
    assert callstate.finish(["2000"], "c1", NOW + 5) == [] and served() == [b"2000"]
    assert callstate.finish(["2000"], "c1", NOW + 6) == [] and served() == []
