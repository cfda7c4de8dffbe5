"""Message-waiting sent again (contract section 5): the NOTIFY that repeats the last
message-summary an MDS sent for a user, and the counts the UC Assistant's event stream
shows (RFC 3842's simple-message-summary). Pure: no Kamailio, no Redis."""
import re
import secrets

from lib.decisions import sipmsg

EVENT = "message-summary"
CONTENT_TYPE = "application/simple-message-summary"
_VOICE = re.compile(r"^Voice-Message:\s*(\d+)/(\d+)", re.I | re.M)


def counts(summary):
    """{"new": N, "old": N} of a simple-message-summary body (voice messages); zeros when
    it names none."""
    match = _VOICE.search(summary or "")
    new, old = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
    return {"new": new, "old": old}


def notify_headers(number, domain):
    """An unsolicited NOTIFY's headers (as an MDS sends them, RFC 3842 section 5), each in
    a dialog of its own."""
    aor = f"sip:{number}@{domain}"
    return sipmsg.header_block((
        # no From tag: Kamailio 5.6's tm gives every request it sends one of its own,
        # after any already there (two tags, the first one ignored)
        ("From", f"<{aor}>"), ("To", f"<{aor}>"),
        ("Call-ID", f"mwi-{secrets.token_hex(12)}@{domain}"), ("CSeq", "1 NOTIFY"),
        ("Event", EVENT), ("Subscription-State", "active"), ("Max-Forwards", "70"),
        ("Content-Type", CONTENT_TYPE)))
