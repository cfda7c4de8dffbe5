"""Media adaptation (contract section 6): which SDP each side of a call gets from
rtpengine, as pure data, and a minimal client of rtpengine's ng control protocol (for
health checks and tests; Kamailio's rtpengine module drives the calls themselves)."""
import os
import socket

WEBRTC = "webrtc"
PLAIN = "plain"    # deskphones and MDS nodes: plain RTP/AVP

# Every offer anchors the media on rtpengine and rewrites origin and connection lines.
_COMMON = "replace-origin replace-session-connection SDES-off"
_OFFER_TO = {
    # A browser accepts only DTLS-SRTP with ICE and rtcp-mux, whatever the caller sent.
    WEBRTC: f"UDP/TLS/RTP/SAVPF ICE=force rtcp-mux-offer rtcp-mux-require generate-mid {_COMMON}",
    # Deskphones and Asterisk get plain RTP: no ICE, no DTLS, RTCP on its own port.
    PLAIN: f"RTP/AVP ICE=remove DTLS=off rtcp-mux-demux {_COMMON}",
}
ANSWER_FLAGS = _COMMON


def media_class(device):
    """The media profile of a side: a browser (webrtc) or anything plain."""
    return WEBRTC if device == WEBRTC else PLAIN


def offer_flags(target):
    """rtpengine_offer flags for an offer sent towards a side of class `target`."""
    return _OFFER_TO[media_class(target)]


# Record-Route parameters that remember both sides' classes, so that in-dialog offers
# (re-INVITE, UPDATE) are adapted without reading any state.
CALLER_PARAM = "ua_a"
CALLEE_PARAM = "ua_b"


def route_params(caller, callee):
    return f";{CALLER_PARAM}={media_class(caller)};{CALLEE_PARAM}={media_class(callee)}"


def in_dialog_target(downstream, callee_is_webrtc, caller_is_webrtc):
    """The class an in-dialog offer is going to: the callee when it flows downstream."""
    return WEBRTC if (callee_is_webrtc if downstream else caller_is_webrtc) else PLAIN


# --- ng protocol: bencoded dictionaries over UDP (cookie, space, message) ----------------

def bencode(value):
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, (list, tuple)):
        return b"l" + b"".join(bencode(v) for v in value) + b"e"
    if isinstance(value, dict):
        return b"d" + b"".join(bencode(k) + bencode(value[k]) for k in sorted(value)) + b"e"
    raise TypeError(f"cannot bencode {type(value).__name__}")


def bdecode(data):
    value, end = _bdecode(data, 0)
    if end != len(data):
        raise ValueError("trailing data after bencoded value")
    return value


def _bdecode(data, i):
    kind = data[i:i + 1]
    if kind == b"i":
        end = data.index(b"e", i)
        return int(data[i + 1:end]), end + 1
    if kind in (b"l", b"d"):
        items, i = [], i + 1
        while data[i:i + 1] != b"e":
            item, i = _bdecode(data, i)
            items.append(item)
        if kind == b"l":
            return items, i + 1
        return {items[k].decode(): items[k + 1] for k in range(0, len(items), 2)}, i + 1
    colon = data.index(b":", i)
    length = int(data[i:colon])
    return data[colon + 1:colon + 1 + length], colon + 1 + length


class NgError(Exception):
    pass


def ng_address(url):
    """'udp:127.0.0.1:2223' (Kamailio's rtpengine_sock form) -> ('127.0.0.1', 2223)."""
    host, port = url.removeprefix("udp:").rsplit(":", 1)
    return host.strip("[]"), int(port)


def ng_command(url, command, timeout=0.3, **args):
    """One ng request; raises NgError when rtpengine does not answer in time."""
    cookie = os.urandom(6).hex().encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(cookie + b" " + bencode({"command": command, **args}), ng_address(url))
            while True:
                reply = sock.recv(65535)
                if reply.startswith(cookie + b" "):
                    return bdecode(reply[len(cookie) + 1:])
        except OSError as exc:
            raise NgError(f"rtpengine at {url}: {exc or 'no answer'}") from exc


def alive(url):
    try:
        return ng_command(url, "ping").get("result") == b"pong"
    except NgError:
        return False
