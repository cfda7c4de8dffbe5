"""Message-waiting sent again (contract section 5): the proxy keeps the last
message-summary an MDS sent for each user, and sends it again to a device that registers
anew (the Kamailio glue, kemi/control.py) and to the effective device after a device
change (the API server, over Kamailio's RPC: tm.t_uac_start)."""
import logging

from lib.decisions import mwi
from lib.features import control, nodes, registrar
from lib.store import keyspace

log = logging.getLogger("ua.mwi")


def keep(number, summary):
    """The command that keeps a user's last message-summary (run by the glue)."""
    return ("SET", keyspace.mwi_key(number), summary)


def last(r, number):
    raw = r.get(keyspace.mwi_key(number))
    return raw.decode("utf-8", "replace") if raw else None


def notifies(cfg, number, contacts, summary):
    """(Request-URI, next hop, socket, headers, body) of the NOTIFY repeating `summary` to
    each contact, from this proxy (a device whose connection another proxy holds is reached
    through it, as a call would)."""
    udp, tcp = f"udp:{cfg.listen}:{cfg.sip_port}", f"tcp:{cfg.listen}:{cfg.sip_port}"
    return [(*nodes.branch(c, cfg.node_id, udp, tcp), mwi.notify_headers(number, cfg.domain),
             summary) for c in contacts]


def resend_to_device(cfg, r, number, device, now):
    """After a device change: the last summary to the contacts of `device`, sent by this
    proxy's Kamailio."""
    summary = last(r, number)
    if summary is None or device is None:
        return
    contacts = [c for c in registrar.live(registrar.decode(
        r.hgetall(keyspace.contacts_key(number)).items()), now).values()
        if c["class"] == device]
    for message in notifies(cfg, number, contacts, summary):
        try:
            control.rpc(cfg.kamailio_ctl, "tm.t_uac_start", "NOTIFY", *message)
        except control.ControlError as exc:
            # The device change stands; the device gets the next summary from its MDS.
            log.warning("message-summary not sent again to %s: %s", number, exc)
