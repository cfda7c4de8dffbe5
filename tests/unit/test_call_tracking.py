"""What the glue keeps of a call between its routes, without Kamailio: the ring plan the
failure route reads back (kept with the transaction as JSON), and the local users an
in-dialog request names in its Route header."""
from lib.decisions import forwarding, routing
from lib.features import callstate
from lib.features.calls import CallContext, Plan, RingPlan

FORWARDS = {"unconditional": {"enabled": False, "destination": None},
            "busy": {"enabled": True, "destination": "3000"},
            "noanswer": {"enabled": False, "destination": None}, "dnd": False}


def ringing_alice():
    ctx = CallContext(source_mds=None, caller=None, caller_ha1=None, caller_mds_uri=None,
                      callee={"number": "1000", "ring_seconds": 20, "line_type": "ua"},
                      callee_selected="webrtc", callee_forwards=FORWARDS,
                      callee_mds_uri="sip:127.0.0.10:5060")
    plan = Plan(None, ctx, retargets=[forwarding.Retarget("2000", "unconditional", "1000")])
    ring = routing.Ring(routing.WEBRTC, "selected", [{"field": "webrtc|tab-1"},
                                                     {"field": "webrtc|tab-2"}])
    return plan, ring


def test_the_ring_plan_reads_back_as_it_was_written():
    plan, ring = ringing_alice()
    written = RingPlan.of(plan, ring, diverted=["4000"])
    assert written == RingPlan(number="1000", device="webrtc", ring_seconds=20,
                               forwards=FORWARDS, mds_uri="sip:127.0.0.10:5060",
                               diverted=["4000", "2000"], rung=["webrtc|tab-1", "webrtc|tab-2"])
    assert RingPlan.loads(written.dumps()) == written


def test_the_ring_plan_gives_the_failure_route_its_callee():
    plan, ring = ringing_alice()
    ctx = RingPlan.of(plan, ring, diverted=[]).callee_context()
    assert ctx.callee == {"number": "1000", "ring_seconds": 20}
    assert (ctx.callee_forwards, ctx.callee_mds_uri) == (FORWARDS, "sip:127.0.0.10:5060")
    assert ctx.caller is None and ctx.source_mds is None


def test_dialog_users_from_the_route_header():
    route = "<sip:127.0.0.1:5060;lr;ua_c=1000;ua_t=1001;ua_m=wp>, <sip:127.0.0.2;lr>"
    assert callstate.dialog_users(route) == ["1000", "1001"]
    # a retarget from the failure route names its callee after the first one's
    assert callstate.dialog_users("<sip:127.0.0.1;lr;ua_t=1001;ua_t=2000>") == ["2000"]
    assert callstate.dialog_users("<sip:127.0.0.1;lr>") == []
    assert callstate.dialog_users(None) == []
