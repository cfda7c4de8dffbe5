"""What every route of the glue shares: the configuration, reading the message, answering,
counting, and the one exception boundary (guarded)."""
import traceback

import KSR

from lib import config, metrics
from lib.decisions import sipmsg
from lib.store import clients

CONNECTION_PROTOS = ("tcp", "tls", "ws", "wss")
LISTENER_PROTO = {"ws": "tcp", "wss": "tls"}
# Kamailio URIs know no transport=wss: a WSS peer is addressed as ws, its socket says TLS.
URI_TRANSPORT = {"wss": "ws"}
CFG = config.load()
MEDIA = CFG.media == "rtpengine"


def pv(name):
    return KSR.pv.get(name)


def header_values(name):
    """Every header of that name, each read whole. KSR.hdr.get_idx hands over the parsed
    header's own text; a pseudo-variable ($(hdr(X)[*])) copies into a buffer of
    pv_buffer_size bytes and gives nothing at all when the values do not fit, which
    would read as an absent header (a REGISTER of a thousand bindings as a query)."""
    values = []
    while (value := KSR.hdr.get_idx(name, len(values))) is not None:
        values.append(value)
    return values


def reply(code, text, headers=()):
    for header in headers:
        KSR.hdr.append_to_reply(header + "\r\n")
    KSR.sl.send_reply(code, text)


def store_unavailable():
    reply(503, "Service Unavailable", ["Retry-After: 1"])


def count(family, *labels):
    """One more in a counter of lib/metrics, unless UA_METRICS=0 (make bench's comparison)."""
    if CFG.metrics:
        metrics.count(family, *labels)


def guarded(fn, *args):
    """Every entry point: an exception must never reach Kamailio (a reply would be dropped,
    a request left unanswered)."""
    try:
        fn(*args)
    except clients.StoreUnavailable:
        count("ua_store_errors_total")
        if can_answer():
            store_unavailable()
    except sipmsg.SipSyntaxError as exc:
        if can_answer():
            reply(400, f"Bad Request ({exc})")
    except UnicodeDecodeError:
        # KSR hands values over as UTF-8 text: bytes that are not are bad input.
        if can_answer():
            reply(400, "Bad Request (not UTF-8)")
    except Exception:
        KSR.err("ua: " + traceback.format_exc().replace("\n", " | ") + "\n")
        if can_answer():
            reply(500, "Server Internal Error")
    return 1


def quietly(fn, *args):
    """Work with no request to answer: log a failure, never answer it. Bookkeeping after
    the request was relayed, and the timer and event routes: Kamailio runs those on a
    stand-in OPTIONS of its own (core/fmsg.c) whose source, 127.0.0.1 stored in host byte
    order, reads 1.0.0.127:5060, and whose reply lumps pile up from one run to the next."""
    try:
        fn(*args)
    except clients.StoreUnavailable:
        count("ua_store_errors_total")
    except Exception:
        KSR.err("ua: " + traceback.format_exc().replace("\n", " | ") + "\n")
    return 1


def can_answer():
    """A request being routed (not a branch of one, not an ACK) can still be answered."""
    return (KSR.siputils.is_request() > 0 and not KSR.is_ACK()
            and KSR.tmx.t_is_branch_route() < 0)


def alias_contact():
    """A device behind a connection or a NAT is only reachable through the address its
    message came from: its Contact gets an alias so in-dialog requests find the way back.
    (nat_uac_test 19: private Contact address, Via address or port not the source.)"""
    if ";alias=" in (KSR.hdr.get("Contact") or ""):
        return   # aliased by the proxy holding the device's connection (lib/features/nodes)
    if pv("$pr") in CONNECTION_PROTOS or KSR.nathelper.nat_uac_test(19) > 0:
        KSR.nathelper.add_contact_alias()


def send_notify(message):
    KSR.tm.t_uac_send("NOTIFY", message.ruri, message.nexthop, message.socket,
                      message.headers, message.body)
