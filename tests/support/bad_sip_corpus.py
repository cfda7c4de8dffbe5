"""A corpus of malformed or hostile SIP requests for tests/proxy/test_bad_sip.py, generated as
templates (one well-formed request per method) x mutations (one fault each), plus
hand-written specials (broken request lines, REGISTER floods and overflows, garbage
digest credentials).

Every case is bytes with placeholders, filled per send by `Case.render`:
    $$DOM$$    the proxy's SIP domain          $$HOST$$   the proxy's host:port
    $$LOCAL$$  the sender's host:port (Via)    $$PROTO$$  UDP / TCP / WS
    $$CID$$    a Call-ID unique per send       $$BR$$     a Via branch unique per send
Placeholders stay out of bodies, so a computed Content-Length remains right.
"""
from __future__ import annotations

from dataclasses import dataclass

METHODS = ("REGISTER", "INVITE", "SUBSCRIBE", "NOTIFY", "OPTIONS", "BYE", "CANCEL", "ACK",
           "MESSAGE", "PUBLISH", "UPDATE", "INFO", "REFER")

SDP = (b"v=0\r\no=- 1 1 IN IP4 127.0.0.40\r\ns=-\r\nc=IN IP4 127.0.0.40\r\nt=0 0\r\n"
       b"m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
BIG = 8192


@dataclass(frozen=True)
class Case:
    name: str
    template: bytes
    ok_2xx: bool = False   # a 2xx is legitimate (the unauthenticated OPTIONS keepalive)

    def render(self, *, dom, host, local, proto, cid, branch) -> bytes:
        out = self.template
        for key, value in (("$$DOM$$", dom), ("$$HOST$$", host), ("$$LOCAL$$", local),
                           ("$$PROTO$$", proto), ("$$CID$$", cid), ("$$BR$$", branch)):
            out = out.replace(key.encode(), value.encode())
        return out

    def minimal(self) -> str:
        """A short, readable form for failure reports."""
        text = self.template.decode("utf-8", "backslashreplace")
        if len(text) > 700:
            text = text[:500] + f" ...[{len(text)} chars]... " + text[-150:]
        return text


def _b(value) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


class Msg:
    """A request under construction: start line, ordered headers, body."""

    def __init__(self, method: str):
        self.method = method
        self.ruri = "sip:$$DOM$$" if method == "REGISTER" else "sip:1001@$$DOM$$"
        self.start = None   # a whole replacement start line
        to = "<sip:1000@$$DOM$$>" if method == "REGISTER" else "<sip:1001@$$DOM$$>"
        self.headers: list[tuple[str, bytes]] = [
            ("Via", b"SIP/2.0/$$PROTO$$ $$LOCAL$$;branch=$$BR$$;rport"),
            ("Max-Forwards", b"70"),
            ("From", b"<sip:1000@$$DOM$$>;tag=$$CID$$-ft"),
            ("To", _b(to)),
            ("Call-ID", b"$$CID$$"),
            ("CSeq", _b(f"1 {method}")),
            ("Contact", b"<sip:1000@$$LOCAL$$>"),
            ("User-Agent", b"badsip/1.0"),
        ]
        if method in ("SUBSCRIBE", "NOTIFY", "PUBLISH"):
            self.headers.append(("Event", b"dialog" if method != "PUBLISH" else b"presence"))
        if method == "NOTIFY":
            self.headers.append(("Subscription-State", b"active;expires=60"))
        if method == "REFER":
            self.headers.append(("Refer-To", b"<sip:1001@$$DOM$$>"))
        if method == "REGISTER":
            self.headers.append(("Expires", b"600"))
        self.body = b""
        self.content_type: bytes | None = None
        if method == "INVITE":
            self.body, self.content_type = SDP, b"application/sdp"
        elif method == "MESSAGE":
            self.body, self.content_type = b"hello", b"text/plain"
        self.content_length: bytes | None = None   # None: computed
        self.eol = b"\r\n"

    def set(self, name: str, value) -> Msg:
        value = _b(value)
        for i, (n, _) in enumerate(self.headers):
            if n is not None and n.lower() == name.lower():
                self.headers[i] = (n, value)
                return self
        self.headers.append((name, value))
        return self

    def drop(self, name: str) -> Msg:
        self.headers = [(n, v) for n, v in self.headers if n is None or n.lower() != name.lower()]
        return self

    def add(self, name: str, value) -> Msg:
        self.headers.append((name, _b(value)))
        return self

    def bytes(self) -> bytes:
        start = self.start if self.start is not None else _b(f"{self.method} ") + _b(self.ruri) + b" SIP/2.0"
        lines = [_b(start)]
        lines += [v if n is None else _b(n) + b": " + v for n, v in self.headers]
        if self.content_type is not None:
            lines.append(b"Content-Type: " + self.content_type)
        cl = self.content_length if self.content_length is not None else _b(str(len(self.body)))
        if cl != b"-":
            lines.append(b"Content-Length: " + cl)
        return self.eol.join(lines) + self.eol + self.eol + self.body


# --- mutations: name -> function(Msg) -> Msg ------------------------------------------

def _missing(header):
    return lambda m: m.drop(header)


def _cl(value, body=SDP):
    def mut(m):
        m.body = body
        m.content_type = m.content_type or b"application/sdp"
        m.content_length = _b(value)
        return m
    return mut


def _cseq_mismatch(m):
    other = "BYE" if m.method != "BYE" else "INVITE"
    return m.set("CSeq", f"1 {other}")


def _ruri(uri):
    def mut(m):
        m.ruri = uri
        return m
    return mut


def _from_user(user):
    return lambda m: m.set("From", b"<sip:" + _b(user) + b"@$$DOM$$>;tag=$$CID$$-ft")


def _to_user(user):
    return lambda m: m.set("To", b"<sip:" + _b(user) + b"@$$DOM$$>")


def _wrong_ctype(ctype, body):
    def mut(m):
        m.content_type = None if ctype is None else _b(ctype)
        m.body = body
        return m
    return mut


def _route_loop(m):
    m.ruri = "sip:1001@$$HOST$$"
    m.add("Route", "<sip:$$HOST$$;lr>")
    m.add("Route", "<sip:$$HOST$$;lr>")
    return m


def _in_dialog_loop(m):
    """Looks in-dialog (To tag), routed through the proxy to the proxy again."""
    m.ruri = "sip:1001@$$HOST$$"
    m.set("To", "<sip:1001@$$DOM$$>;tag=bogus-to-tag")
    m.add("Route", "<sip:$$HOST$$;lr>")
    return m


def _lf_only(m):
    m.eol = b"\n"
    return m


STRUCTURAL = {
    "no-via": _missing("Via"),
    "no-from": _missing("From"),
    "no-to": _missing("To"),
    "no-call-id": _missing("Call-ID"),
    "no-cseq": _missing("CSeq"),
    "cl-negative": _cl("-5"),
    "cl-too-big": _cl("99999"),
    "cl-non-numeric": _cl("abc"),
    "cl-overflow": _cl("99999999999999999999"),
    "huge-header": lambda m: m.add("X-Junk", "A" * BIG),
    "huge-user-agent": lambda m: m.set("User-Agent", "U" * BIG),
    "huge-from-display": lambda m: m.set("From", '"' + "D" * BIG + '" <sip:1000@$$DOM$$>;tag=$$CID$$-ft'),
    "cseq-mismatch": _cseq_mismatch,
    "cseq-garbage": lambda m: m.set("CSeq", f"abc {m.method}"),
    "cseq-overflow": lambda m: m.set("CSeq", f"99999999999999999999 {m.method}"),
    "maxfwd-0": lambda m: m.set("Max-Forwards", "0"),
    "maxfwd-255": lambda m: m.set("Max-Forwards", "255"),
    "maxfwd-garbage": lambda m: m.set("Max-Forwards", "-1x"),
    "nonutf8-user-agent": lambda m: m.set("User-Agent", b"\xff\xfe\xfd\xc3\x28\x80"),
    "nonutf8-call-id": lambda m: m.set("Call-ID", b"$$CID$$\xff\xfe"),
    "nonutf8-from-display": lambda m: m.set("From", b'"\xc3\x28\xa0\xa1" <sip:1000@$$DOM$$>;tag=$$CID$$-ft'),
    "nul-in-header": lambda m: m.add("X-Nul", b"a\x00b\x00c"),
    "header-no-colon": lambda m: m.headers.append((None, b"This line is not a header")) or m,
    "via-garbage": lambda m: m.set("Via", "garbage garbage"),
    "via-no-host": lambda m: m.set("Via", "SIP/2.0/$$PROTO$$"),
    "dup-call-id": lambda m: m.add("Call-ID", "another-$$CID$$"),
    "dup-from": lambda m: m.add("From", "<sip:evil@evil.example>;tag=x"),
    "route-loop": _route_loop,
    "in-dialog-loop": _in_dialog_loop,
    "lf-only": _lf_only,
    "ctype-text-with-sdp": _wrong_ctype("text/plain", SDP),
    "ctype-sdp-with-garbage": _wrong_ctype("application/sdp", b"\x00\x01garbage\xff" * 20),
    "ctype-broken": _wrong_ctype("garbage/;;;==", b"x=1"),
    "body-no-ctype": _wrong_ctype(None, b"some body without a type"),
}

BAD_USERS = {
    "empty": "",
    "space": "10 00",
    "unicode": "\u00fc\u00f1\u00ee\u00e7\u00f8d\u00e9\u2603",
    "nonutf8": b"\xff\xfe\xc3\x28",
    "sql": "1000' OR 1=1 --",
    "script": "<script>alert(1)</script>",
    "huge": "9" * BIG,
    "percent-nul": "%00%ff1000",
}

BAD_RURIS = {
    "sip:": "sip:",
    "sip:@": "sip:@$$DOM$$",
    "sip:1000@": "sip:1000@",
    "spaces": "sip:10 00@$$DOM$$",
    "unicode": "sip:\u00fc\u00f1\u00ee\u2603@$$DOM$$",
    "nonutf8": b"sip:\xff\xfe\x80@$$DOM$$",
    "sql": "sip:1000' OR 1=1 --@$$DOM$$",
    "script": "sip:<script>alert(1)</script>@$$DOM$$",
    "port-overflow": "sip:1000@$$DOM$$:99999",
    "percent-nul": "sip:%00%ff@$$DOM$$",
    "tel-garbage": "tel:+++;;;",
    "http": "http://evil.example/",
    "ipv6-open": "sip:1000@[::1",
    "huge-user": "sip:" + "9" * BIG + "@$$DOM$$",
}


def _register_special() -> list[tuple[str, Msg]]:
    out = []

    def reg(name, fn):
        m = Msg("REGISTER")
        fn(m)
        out.append((name, m))

    def thousand_contacts(m):
        m.drop("Contact")
        for i in range(1000):
            m.add("Contact", f"<sip:1000@127.0.0.40:{10000 + i}>;expires=600")

    reg("1000-contacts", thousand_contacts)
    reg("1000-contacts-one-line", lambda m: m.set(
        "Contact", ", ".join(f"<sip:1000@127.0.0.40:{10000 + i}>" for i in range(1000))))
    for value in ("99999999999999999999", "-1", "abc", "4294967296", "0x10"):
        reg(f"expires-header={value}", lambda m, v=value: m.set("Expires", v))
        reg(f"contact-expires={value}",
            lambda m, v=value: m.set("Contact", f"<sip:1000@$$LOCAL$$>;expires={v}"))
    reg("star-with-expires", lambda m: m.set("Contact", "*"))
    reg("contact-garbage", lambda m: m.set("Contact", "<<<>>>;;;=,,,"))
    reg("contact-unicode", lambda m: m.set("Contact", "<sip:\u2603@\u00fc\u00f1.example>"))
    reg("contact-nonutf8", lambda m: m.set("Contact", b"<sip:\xff\xfe@127.0.0.40>"))
    reg("to-other-user", lambda m: m.set("To", "<sip:1001@$$DOM$$>"))
    reg("aor-sql", lambda m: (m.set("To", "<sip:1000' OR 1=1 --@$$DOM$$>"),
                              m.set("From", "<sip:1000' OR 1=1 --@$$DOM$$>;tag=x")))
    return out


AUTH_GARBAGE = {
    "garbage-nonce": 'Digest username="1000", realm="$$DOM$$", nonce="garbage", '
                     'uri="sip:$$DOM$$", response="00000000000000000000000000000000"',
    "username-only": 'Digest username="1000"',
    "empty-digest": "Digest ",
    "commas": "Digest ,,,,,,,,",
    "unquoted-empty": "Digest username=1000, realm=, nonce=, uri=, response=",
    "sql-user": 'Digest username="1000\' OR 1=1 --", realm="$$DOM$$", nonce="x", '
                'uri="sip:$$DOM$$", response="x"',
    "script-user": 'Digest username="<script>alert(1)</script>", realm="$$DOM$$", '
                   'nonce="x", uri="sip:$$DOM$$", response="x"',
    "empty-user": 'Digest username="", realm="$$DOM$$", nonce="x", uri="sip:$$DOM$$", '
                  'response="x"',
    "huge-nonce": 'Digest username="1000", realm="$$DOM$$", nonce="' + "N" * 4000 +
                  '", uri="sip:$$DOM$$", response="x"',
    "qop-no-nc": 'Digest username="1000", realm="$$DOM$$", nonce="x", uri="sip:$$DOM$$", '
                 'response="x", qop=auth',
    "bad-algorithm": 'Digest username="1000", realm="$$DOM$$", nonce="x", '
                     'uri="sip:$$DOM$$", response="x", algorithm=SHA-999',
    "basic-valid-password": "Basic MTAwMDpzZWNyZXQ=",     # 1000:secret
    "nonutf8-user": b'Digest username="\xff\xfe", realm="$$DOM$$", nonce="x", '
                    b'uri="sip:$$DOM$$", response="x"',
    "wrong-realm": 'Digest username="1000", realm="evil.example", nonce="x", '
                   'uri="sip:$$DOM$$", response="x"',
    "unterminated-quote": 'Digest username="1000, realm="$$DOM$$, nonce="x',
    "user-with-domain": 'Digest username="1000@$$DOM$$", realm="$$DOM$$", nonce="x", '
                        'uri="sip:$$DOM$$", response="x"',
    "nc-overflow": 'Digest username="1000", realm="$$DOM$$", nonce="x", uri="sip:$$DOM$$", '
                   'response="x", qop=auth, nc=ffffffffffffffffffff, cnonce="c"',
}

RAW_LINES = {
    "method-only": b"REGISTER\r\n\r\n",
    "no-version": b"REGISTER sip:$$DOM$$\r\nVia: SIP/2.0/$$PROTO$$ $$LOCAL$$;branch=$$BR$$;rport\r\n"
                  b"Call-ID: $$CID$$\r\nContent-Length: 0\r\n\r\n",
    "sip-3.0": b"REGISTER sip:$$DOM$$ SIP/3.0\r\n",
    "lowercase-method": b"register sip:$$DOM$$ SIP/2.0\r\n",
    "double-spaces": b"REGISTER  sip:$$DOM$$  SIP/2.0\r\n",
    "tab-separated": b"REGISTER\tsip:$$DOM$$\tSIP/2.0\r\n",
    "unknown-method": b"FOOBAR sip:1001@$$DOM$$ SIP/2.0\r\n",
    "leading-space": b" INVITE sip:1001@$$DOM$$ SIP/2.0\r\n",
    "http-get": b"GET /api/v1/health HTTP/1.1\r\nHost: $$HOST$$\r\n\r\n",
    "binary": b"\x00\x01\x02\x03\xff\xfe\xfd garbage \x80\x81\r\n\r\n",
    "unsolicited-200": b"SIP/2.0 200 OK\r\n",
    "unsolicited-garbage-status": b"SIP/2.0 999999 WAT\r\n",
    "huge-request-line": b"INVITE sip:" + b"x" * BIG + b"@$$DOM$$ SIP/2.0\r\n",
    "method-nonutf8": b"INV\xffITE sip:1001@$$DOM$$ SIP/2.0\r\n",
    "no-uri": b"INVITE SIP/2.0\r\n",
    "crlf-only": b"\r\n\r\n\r\n\r\n",
}

_RAW_HEADERS = (b"Via: SIP/2.0/$$PROTO$$ $$LOCAL$$;branch=$$BR$$;rport\r\nMax-Forwards: 70\r\n"
                b"From: <sip:1000@$$DOM$$>;tag=$$CID$$-ft\r\nTo: <sip:1000@$$DOM$$>\r\n"
                b"Call-ID: $$CID$$\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n")


def build() -> list[Case]:
    cases: list[Case] = []
    # Every method x every structural fault.
    for method in METHODS:
        for name, mut in STRUCTURAL.items():
            cases.append(Case(f"{method}/{name}", mut(Msg(method)).bytes()))
    # Bad R-URIs, From and To users: each fault on several methods (rotating).
    for i, (name, uri) in enumerate(BAD_RURIS.items()):
        for method in dict.fromkeys((METHODS[i % len(METHODS)], METHODS[(i + 5) % len(METHODS)],
                                     "REGISTER", "INVITE")):
            cases.append(Case(f"{method}/ruri-{name}", _ruri(uri)(Msg(method)).bytes()))
    for i, (name, user) in enumerate(BAD_USERS.items()):
        for method in dict.fromkeys(("REGISTER", "INVITE", METHODS[(i + 2) % len(METHODS)])):
            cases.append(Case(f"{method}/from-user-{name}", _from_user(user)(Msg(method)).bytes()))
            cases.append(Case(f"{method}/to-user-{name}", _to_user(user)(Msg(method)).bytes()))
    # The unauthenticated keepalive (OPTIONS to the proxy): 200 is fine unless the request
    # misses a mandatory header.
    for name, mut in STRUCTURAL.items():
        m = Msg("OPTIONS")
        m.ruri = "sip:$$DOM$$"
        m.set("To", "<sip:$$DOM$$>")
        cases.append(Case(f"OPTIONS-keepalive/{name}", mut(m).bytes(),
                          ok_2xx=not name.startswith("no-")))
    # REGISTER specials.
    for name, m in _register_special():
        cases.append(Case(f"REGISTER/{name}", m.bytes()))
    # Garbage credentials: REGISTER (Authorization) and INVITE (Proxy-Authorization).
    for name, value in AUTH_GARBAGE.items():
        cases.append(Case(f"REGISTER/auth-{name}", Msg("REGISTER").add("Authorization", value).bytes()))
        m = Msg("INVITE").add("Proxy-Authorization", _b(value).replace(b"sip:$$DOM$$", b"sip:1001@$$DOM$$"))
        cases.append(Case(f"INVITE/proxy-auth-{name}", m.bytes()))
    # Broken request lines, some followed by otherwise good headers.
    for name, line in RAW_LINES.items():
        cases.append(Case(f"raw/{name}", line if line.endswith(b"\r\n\r\n") else line + b"\r\n"))
        if not line.endswith(b"\r\n\r\n"):
            cases.append(Case(f"raw/{name}+headers", line + _RAW_HEADERS))
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "duplicate case names"
    return cases


CORPUS = build()


def ws_subset(cases: list[Case], at_least: int = 40) -> list[Case]:
    """An evenly spread subset for WebSocket, plus every raw start line and auth case."""
    step = max(1, len(cases) // at_least)
    chosen = {c.name: c for c in cases[::step]}
    for c in cases:
        if c.name.startswith(("raw/", "REGISTER/auth-", "REGISTER/1000-contacts")):
            chosen.setdefault(c.name, c)
    return list(chosen.values())
