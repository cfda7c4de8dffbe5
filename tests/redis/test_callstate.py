"""lib/features/callstate's call events against a real Redis, as the call-event process writes
them: a batch in one round trip, in the order queued, telling which users have BLF
watchers; a batch Redis did not take is kept and written once it is back."""
import time

import pytest
import redis

from lib.features import blf, callstate
from lib.store import clients, keyspace, wire
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


def incoming(number="2000"):
    party = callstate.Participants(callee=number)
    party.calls[number] = callstate.new_call("in", "deskphone", "3000", NOW, 30)
    return party


def whole_call(call_id="c1"):
    party = incoming()
    return [callstate.start_event(party, call_id, NOW),
            callstate.answer_event(party.calls, call_id, NOW + 1),
            callstate.finish_event(["2000"], call_id, NOW + 5)]


def watch(number="2000"):
    sub = blf.new_subscription(number, "127.0.0.1", "w1", "<sip:1001@h>;tag=t", "tag",
                               "sip:1001@127.0.0.30", "sip:127.0.0.30", "udp:127.0.0.1:5060",
                               "<sip:1001@127.0.0.30>", [], 600, NOW)
    return blf.subscribe(sub, NOW)


def round_trips(monkeypatch):
    seen, batch = [], wire.batch
    monkeypatch.setattr(wire, "batch", lambda *commands: (seen.append(len(commands)),
                                                          batch(*commands))[1])
    return seen


def test_a_whole_call_in_one_batch_is_in_the_history_and_nobody_is_told(redis_url, carol,
                                                                          monkeypatch):
    trips = round_trips(monkeypatch)
    assert callstate.apply(whole_call()) == []
    assert len(trips) == 1
    assert callstate.calls_of(clients.client(), "2000") == []
    [entry] = callstate.history(clients.client(), "2000", 10)
    assert entry["call_id"] == "c1" and entry["answered"] is True
    assert entry["duration_s"] == 4.0


def test_events_apply_in_the_order_queued(redis_url, carol):
    """Answered, then ended, in separate batches: the calls in progress follow each."""
    party = incoming()
    r = clients.client()
    callstate.apply([callstate.start_event(party, "c1", NOW)])
    assert [c["state"] for c in callstate.calls_of(r, "2000")] == ["ringing"]
    callstate.apply([callstate.answer_event(party.calls, "c1", NOW + 1)])
    assert [c["state"] for c in callstate.calls_of(r, "2000")] == ["in_call"]
    assert r.zcard(keyspace.active_calls_key("deskphone")) == 1
    callstate.apply([callstate.finish_event(["2000"], "c1", NOW + 5)])
    assert callstate.calls_of(r, "2000") == []
    assert r.zcard(keyspace.active_calls_key("deskphone")) == 0


def test_an_answer_that_crossed_the_end_leaves_the_call_ended(redis_url, carol):
    party = incoming()
    callstate.apply([callstate.start_event(party, "c1", NOW),
                     callstate.finish_event(["2000"], "c1", NOW + 1),
                     callstate.answer_event(party.calls, "c1", NOW + 1)])
    assert callstate.calls_of(clients.client(), "2000") == []
    [entry] = callstate.history(clients.client(), "2000", 10)
    assert entry["answered"] is False


def test_each_event_tells_a_watched_user_once_a_batch(redis_url, carol):
    watch()
    assert callstate.apply(whole_call()) == ["2000"]
    assert callstate.apply([callstate.start_event(incoming(), "c2", NOW)]) == ["2000"]
    assert callstate.apply([callstate.finish_event(["2000"], "c2", NOW + 1)]) == ["2000"]


def test_rule_7_moves_the_ringing_call_to_the_deskphone(redis_url, carol):
    party = incoming()
    party.calls["2000"]["device"] = "webrtc"
    moved = {**party.calls["2000"], "device": "deskphone"}
    r = clients.client()
    callstate.apply([callstate.start_event(party, "c1", NOW),
                     callstate.device_event("2000", "c1", moved)])
    assert [c["device"] for c in callstate.calls_of(r, "2000")] == ["deskphone"]
    assert r.zcard(keyspace.active_calls_key("webrtc")) == 0
    assert r.zcard(keyspace.active_calls_key("deskphone")) == 1


def test_a_batch_redis_did_not_take_is_written_once_it_is_back(redis_url, redis_server, carol):
    batches = callstate.Batches()
    redis_server.stop()
    try:
        with pytest.raises(clients.StoreUnavailable):
            batches.write(whole_call("c1"))
        with pytest.raises(clients.StoreUnavailable):
            batches.write(whole_call("c2"))
    finally:
        redis_server.start()
    assert batches.write([]) == []
    assert batches.pending == []
    history = callstate.history(clients.client(), "2000", 10)
    assert [h["call_id"] for h in history] == ["c2", "c1"]      # newest first, each once
