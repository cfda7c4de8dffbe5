"""SIP message and header parsing shared by the test phones: the WebSocket softphone
(sipua.py) and the SIPp wrapper (sipp.py), which reads SIPp's message logs.

Standard library only, because sipp.py is.

    msg = SipMessage(text_or_bytes)          # ValueError if it is not SIP
    msg.method, msg.ruri / msg.status, msg.reason
    msg.header("Contact"), msg.header_all("Via"), msg.param("To", "tag"), msg.cseq
    uri_of('"Bob" <sip:b@h>;tag=1'), header_params(...), parse_uri(...), split_list(...)
"""

from __future__ import annotations

from dataclasses import dataclass

# RFC 3261 7.3.3 and later RFCs' compact header names.
COMPACT_FORMS = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

# Headers whose grammar is a comma-separated list, so one header line may carry several
# values. Others (WWW-Authenticate, Date, ...) contain commas that are not separators.
LIST_HEADERS = {
    "via",
    "route",
    "record-route",
    "contact",
    "path",
    "service-route",
    "allow",
    "supported",
    "require",
    "proxy-require",
    "unsupported",
    "diversion",
    "p-asserted-identity",
}


def _unquoted(value: str):
    """Yield (index, char) for the chars outside quoted strings (quotes excluded)."""
    quoted = escaped = False
    for i, ch in enumerate(value):
        if quoted:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        else:
            yield i, ch


def _top_level(value: str, separators: str):
    """Yield (index, char) for separator chars outside quoted strings and <...>."""
    depth = 0
    for i, ch in _unquoted(value):
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(depth - 1, 0)
        elif depth == 0 and ch in separators:
            yield i, ch


def _split_top(value: str, sep: str) -> list[str]:
    parts, start = [], 0
    for i, _ in _top_level(value, sep):
        parts.append(value[start:i])
        start = i + 1
    parts.append(value[start:])
    return [p.strip() for p in parts]


def split_list(value: str) -> list[str]:
    """Split a list header value at commas that are outside quotes and <>."""
    return [p for p in _split_top(value, ",") if p]


def _first_unquoted(value: str, char: str) -> int:
    return next((i for i, ch in _unquoted(value) if ch == char), -1)


def _addr_end(value: str) -> int:
    """Index just past the closing '>' of a name-addr; 0 for an addr-spec or a Via."""
    start = _first_unquoted(value, "<")
    if start < 0:
        return 0
    end = value.find(">", start)  # a URI can't contain '>' or quotes
    return end + 1 if end >= 0 else len(value)


def uri_of(value: str) -> str:
    """The URI of a name-addr (``"Bob" <sip:b@h;x>;tag=1``) or addr-spec (``sip:b@h;tag=1``)."""
    value = value.strip()
    start = _first_unquoted(value, "<")
    if start >= 0:
        end = value.find(">", start)
        return value[start + 1 : end if end >= 0 else len(value)].strip()
    # Without <>, everything after the first ';' is a header parameter (RFC 3261 20).
    return value.split(";", 1)[0].strip()


def header_params(value: str) -> dict[str, str | None]:
    """Header parameters (after the address or, for Via, after sent-by); keys lower-cased,
    quotes removed, None for a flag parameter."""
    rest = value[_addr_end(value) :]
    parts = _split_top(rest, ";")
    params: dict[str, str | None] = {}
    for part in parts[1:]:
        if not part:
            continue
        name, eq, val = part.partition("=")
        val = val.strip()
        if len(val) >= 2 and val[0] == val[-1] == '"':
            val = val[1:-1]
        params[name.strip().lower()] = val if eq else None
    return params


@dataclass
class SipUri:
    scheme: str
    user: str | None
    host: str
    port: int | None
    params: dict[str, str | None]  # keys lower-cased, None for a flag (``lr``)
    headers: str = ""


def parse_uri(uri: str) -> SipUri:
    """Parse ``sip:user@host:port;params?headers`` (also a name-addr, via uri_of)."""
    uri = uri_of(uri) if "<" in uri else uri.strip()
    scheme, _, rest = uri.partition(":")
    rest, _, hdrs = rest.partition("?")
    userinfo, at, hostpart = rest.rpartition("@")
    hostport, *raw_params = hostpart.split(";")
    params: dict[str, str | None] = {}
    for p in raw_params:
        name, eq, val = p.partition("=")
        params[name.lower()] = val if eq else None
    if hostport.startswith("["):
        close = hostport.find("]")
        host, port = hostport[: close + 1], hostport[close + 2 :]
    else:
        host, _, port = hostport.partition(":")
    return SipUri(
        scheme=scheme.lower(),
        user=userinfo.split(":", 1)[0] if at else None,
        host=host,
        port=int(port) if port else None,
        params=params,
        headers=hdrs,
    )


class SipMessage:
    """A parsed SIP request or response.

    .method / .ruri (requests), .status / .reason (responses), .headers (name, value) in
    order with compact names expanded, .body (cut at Content-Length), .raw. Header
    lookups are case-insensitive and take compact names too.

    strict (the phone's view of what it receives): raise ValueError on a message that
    can't be parsed. strict=False keeps whatever can be read, for a SIPp log entry read
    while SIPp is still writing it.
    """

    def __init__(self, data: str | bytes, strict: bool = True):
        data_bytes = bytes(data) if isinstance(data, (bytes, bytearray)) else data.encode()
        # RFC 5626 CRLF keepalives may precede a message on stream transports.
        data_bytes = data_bytes.lstrip(b"\r\n")
        if not data_bytes and strict:
            raise ValueError("empty SIP message")
        sep = data_bytes.find(b"\r\n\r\n")
        sep_len = 4
        if sep < 0:
            sep, sep_len = data_bytes.find(b"\n\n"), 2
        if sep < 0:
            head, body = data_bytes, b""
        else:
            head, body = data_bytes[:sep], data_bytes[sep + sep_len :]
        self.raw = data_bytes.decode("utf-8", "replace")

        lines = [ln.rstrip("\r") for ln in head.decode("utf-8", "replace").split("\n")]
        self.first_line = lines[0]
        self.method: str | None = None
        self.ruri: str | None = None
        self.status: int | None = None
        self.reason: str | None = None
        parts = self.first_line.split(" ", 2)
        if parts[0].upper().startswith("SIP/") and len(parts) >= 2 and parts[1].isdigit():
            self.status = int(parts[1])
            self.reason = parts[2] if len(parts) > 2 else ""
        elif (len(parts) == 3 and parts[2].startswith("SIP/") and " " not in parts[2]) or (
                not strict and len(parts) >= 2):
            self.method, self.ruri = parts[0].upper(), parts[1]
        elif strict:
            raise ValueError(f"bad start line: {self.first_line!r}")

        self.headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            if line[:1] in (" ", "\t") and self.headers:  # folded continuation line
                name, value = self.headers[-1]
                self.headers[-1] = (name, f"{value} {line.strip()}")
                continue
            if not line.strip():
                continue
            name, colon, value = line.partition(":")
            if not colon:
                if strict:
                    raise ValueError(f"bad header line: {line!r}")
                continue
            name = name.strip()
            if len(name) == 1:
                name = COMPACT_FORMS.get(name.lower(), name)
            self.headers.append((name, value.strip()))

        length = self.header("Content-Length")
        if length is not None and length.isdigit() and int(length) < len(body):
            body = body[: int(length)]
        self.body = body.decode("utf-8", "replace")

    @property
    def is_request(self) -> bool:
        return self.method is not None

    @property
    def is_response(self) -> bool:
        return self.status is not None

    def header_all(self, name: str) -> list[str]:
        """Every value of a header, in order; list headers are split into single values."""
        lname = name.strip().lower()
        if len(lname) == 1:
            lname = COMPACT_FORMS.get(lname, lname).lower()
        values = [v for n, v in self.headers if n.lower() == lname]
        if lname in LIST_HEADERS:
            return [item for v in values for item in split_list(v)]
        return values

    def header(self, name: str) -> str | None:
        values = self.header_all(name)
        return values[0] if values else None

    def has_header(self, name: str) -> bool:
        return bool(self.header_all(name))

    def param(self, name: str, param: str) -> str | None:
        """A header parameter of the first value of a header, e.g. param("To", "tag")."""
        value = self.header(name)
        return None if value is None else header_params(value).get(param.lower())

    @property
    def call_id(self) -> str | None:
        return self.header("Call-ID")

    @property
    def cseq(self) -> tuple[int, str]:
        """(number, METHOD); -1 and "" for what is missing, so it can always be indexed."""
        num, _, method = (self.header("CSeq") or "").partition(" ")
        return (int(num) if num.isdigit() else -1), method.strip().upper()

    @property
    def cseq_method(self) -> str | None:
        return self.cseq[1] or None

    @property
    def from_tag(self) -> str | None:
        return self.param("From", "tag")

    @property
    def to_tag(self) -> str | None:
        return self.param("To", "tag")

    @property
    def branch(self) -> str | None:
        """The branch of the top Via."""
        return self.param("Via", "branch")

    def uri_user(self, header: str | None = None) -> str | None:
        """User part of the Request-URI (header=None) or of a header's URI."""
        text = self.ruri if header is None else self.header(header)
        return parse_uri(text).user if text else None

    def __str__(self) -> str:
        return self.raw

    def __repr__(self) -> str:
        first = f"{self.method} {self.ruri}" if self.is_request else f"{self.status} {self.reason}"
        return f"<SipMessage {first} cseq={' '.join(map(str, self.cseq))} call-id={self.call_id}>"
