"""REGISTER: digest authentication, then the registrar's decision (lib/features/registrar)."""
import time

import KSR

from kemi.glue import (CFG, CONNECTION_PROTOS, LISTENER_PROTO, URI_TRANSPORT, count,
                       header_values, pv, reply)
from lib.decisions import digest
from lib.features import registrar


class Registrar:
    """The registrar route and the digest check initial requests share."""

    def authenticate(self, ha1):
        """Digest check against a stored HA1; answers the challenge or 403 itself."""
        if ha1 is None:
            ha1 = "0" * 32  # unknown user: same answer as a wrong password
        rc = KSR.auth.pv_auth_check(CFG.domain, ha1, 1, 1)
        if rc == -4:      # a stale nonce is no failure, just a new challenge; a replay is
            header = "Authorization" if KSR.is_REGISTER() else "Proxy-Authorization"
            if digest.replayed(KSR.hdr.get(header), time.time()):
                count("ua_auth_failures_total", "replay")
        elif rc < 0:
            count("ua_auth_failures_total", "sip")
        if rc == -8:
            reply(403, "Forbidden (authentication user does not own this address)")
            return False
        if rc < 0:
            KSR.auth.auth_challenge(CFG.domain, 1)
            return False
        KSR.auth.consume_credentials()
        return True

    def registrar(self):
        if KSR.auth.has_credentials(CFG.domain) < 0:
            KSR.auth.auth_challenge(CFG.domain, 1)
            return
        number = KSR.pv.get("$au")
        profile, ha1, stored, summary = registrar.load(number)
        if not self.authenticate(ha1 if profile else None):
            return
        proto = pv("$pr")
        bound = proto in CONNECTION_PROTOS
        req = registrar.RegisterRequest(
            number=number, transport=proto,
            source=f"sip:{pv('$si')}:{pv('$sp')};transport={URI_TRANSPORT.get(proto, proto)}",
            socket=f"{LISTENER_PROTO.get(proto, proto)}:{pv('$Ri')}:{pv('$Rp')}",
            conid=KSR.pv.get("$conid") if bound else None,
            peer=f"{pv('$si')}:{pv('$sp')}" if bound else None,
            contacts=header_values("Contact"),
            expires=KSR.hdr.get("Expires"), call_id=pv("$ci"),
            cseq=int(pv("$cs")), node=CFG.node_id, node_addr=CFG.node_addr)
        now = time.time()
        result = registrar.process_register(req, profile["line_type"], stored, now,
                                            CFG.max_contacts)
        if result.code == 200:
            if registrar.apply(number, result):
                self.watched_changed([number])
            if bound and result.upserts:
                KSR.tcpops.tcp_enable_closed_event_cid(req.conid)
        reply(result.code, result.text, result.headers)
        fresh = [c for f, c in result.upserts.items()
                 if f not in stored or stored[f]["expires_at"] <= now]
        if fresh and summary is not None:   # after its 200: the device knows it is registered
            self.resend_message_summary(number, fresh, summary)
