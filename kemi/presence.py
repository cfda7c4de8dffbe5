"""BLF: dialog-state subscriptions (RFC 4235) and their NOTIFYs (lib/features/blf)."""
import time

import KSR

from kemi.glue import (CFG, LISTENER_PROTO, URI_TRANSPORT, header_values, pv, quietly,
                       reply, send_notify)
from lib.decisions import sipmsg
from lib.features import blf


class Presence:
    """Watchers of a user's dialog state."""

    def watch(self, ctx):
        """A BLF key subscribes to user N's dialog state (RFC 4235)."""
        if ctx.callee is None:
            reply(404, "Not Found")
            return
        expires = self.subscription_expires()
        contact = KSR.hdr.get("Contact")
        if expires is None:
            return
        if not contact:
            reply(400, "Bad Request (no Contact)")
            return
        number, proto = ctx.callee["number"], pv("$pr")
        ours = f"<sip:{number}@{pv('$Ri')}:{pv('$Rp')};transport={URI_TRANSPORT.get(proto, proto)}>"
        sub = blf.new_subscription(
            number, CFG.domain, pv("$ci"), KSR.hdr.get("From"), KSR.pv.get("$ltt(s)"),
            sipmsg.parse_contact(sipmsg.split_values(contact)[0])[0],
            f"sip:{pv('$si')}:{pv('$sp')};transport={URI_TRANSPORT.get(proto, proto)}",
            f"{LISTENER_PROTO.get(proto, proto)}:{pv('$Ri')}:{pv('$Rp')}", ours,
            sipmsg.split_headers(header_values("Record-Route")), expires, time.time())
        reply(200, "OK", [f"Expires: {expires}", f"Contact: {ours}"])
        send_notify(blf.subscribe(sub, time.time()) if expires
                    else blf.notify(sub, "unavailable", time.time(), "timeout")[1])

    def rewatch(self):
        """A watcher refreshes its subscription, or ends it with Expires: 0."""
        sub = blf.find(pv("$rU") or "", pv("$ci"))
        if sub is None:
            reply(481, "Subscription Does Not Exist")
            return
        expires = self.subscription_expires()
        if expires is None:
            return
        reply(200, "OK", [f"Expires: {expires}"])
        now = time.time()
        if expires == 0:
            send_notify(blf.unsubscribe(sub, now, "timeout"))
        else:
            send_notify(blf.subscribe({**sub, "expires_at": now + expires}, now))

    def subscription_expires(self):
        raw = KSR.hdr.get("Expires")
        requested = blf.DEFAULT_EXPIRES if raw is None else sipmsg.parse_delta_seconds(raw)
        expires = blf.granted_expires(requested)
        if expires is None:
            reply(423, "Interval Too Brief", [f"Min-Expires: {blf.MIN_EXPIRES}"])
        return expires

    def presence_changed(self, numbers):
        """Tell the watchers of these users, if their aggregated state changed."""
        for message in blf.changed(numbers, time.time()):
            send_notify(message)

    def watched_changed(self, watched):
        """presence_changed() for users known to have watchers (told by a call event)."""
        for message in blf.watched_changed(watched, time.time()):
            send_notify(message)

    def ksr_blf_timer(self, msg, *args):
        def expire():
            now = time.time()
            for message in blf.late(now) + blf.expired(now):
                send_notify(message)
        return quietly(expire)
