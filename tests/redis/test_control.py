"""lib/features/control's click-to-dial record against a real Redis: changed by two
processes at once (the deskphone's INVITE and the REFER's answer), neither change lost."""
import threading

import redis

from lib.features import control

ROUNDS = 200


def test_two_processes_changing_one_click_to_dial_record_lose_nothing(redis_url):
    first, second = (redis.Redis.from_url(redis_url) for _ in range(2))
    for round_ in range(ROUNDS):
        control.save_dial(first, "1000", "dX", {"state": "dialing", "destination": "2000"})
        start = threading.Barrier(2)

        def change(r, **fields):
            start.wait()
            assert control.update_dial(r, "1000", "dX", **fields)

        writers = [threading.Thread(target=change, args=(first,), kwargs={"call_id": "c1"}),
                   threading.Thread(target=change, args=(second,),
                                    kwargs={"state": "transferred"})]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join()
        assert control.load_dial(first, "1000", "dX") == {
            "state": "transferred", "destination": "2000", "call_id": "c1"}, round_
    assert not control.update_dial(first, "1000", "dNone", state="ended")
