"""lib/decisions/media: which profile each side gets, and the ng protocol's bencoding."""
import pytest

from lib.decisions import media


def test_offers_follow_the_receiving_side_not_the_caller():
    assert media.offer_flags("webrtc").startswith("UDP/TLS/RTP/SAVPF ICE=force")
    assert "rtcp-mux-require" in media.offer_flags("webrtc")
    for plain in ("deskphone", None):
        flags = media.offer_flags(plain)
        assert flags.startswith("RTP/AVP") and "ICE=remove" in flags and "DTLS=off" in flags


@pytest.mark.parametrize("downstream,callee_webrtc,caller_webrtc,target", [
    (True, True, False, "webrtc"), (True, False, True, "plain"),
    (False, True, False, "plain"), (False, False, True, "webrtc")])
def test_in_dialog_offer_goes_to_the_side_it_flows_to(downstream, callee_webrtc,
                                                      caller_webrtc, target):
    assert media.in_dialog_target(downstream, callee_webrtc, caller_webrtc) == target


def test_route_params_name_both_sides():
    assert media.route_params("webrtc", "deskphone") == ";ua_a=webrtc;ua_b=plain"
    assert media.route_params(None, "webrtc") == ";ua_a=plain;ua_b=webrtc"


def test_bencode_round_trip():
    value = {"command": "offer", "flags": ["a", "b"], "n": -3, "nested": {"x": b"\x00y"}}
    decoded = media.bdecode(media.bencode(value))
    assert decoded == {"command": b"offer", "flags": [b"a", b"b"], "n": -3,
                       "nested": {"x": b"\x00y"}}
    with pytest.raises(ValueError):
        media.bdecode(media.bencode("x") + b"junk")


def test_unreachable_rtpengine_is_not_alive():
    from tests.support.sipp import free_port
    assert media.alive(f"udp:127.0.0.1:{free_port()}") is False
