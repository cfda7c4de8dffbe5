"""The little SIP syntax the decisions need: splitting header values, name-addr
parameters and SIP URIs (RFC 3261 sections 19.1, 20.10 and 25.1). Kamailio has already
checked the message's basic syntax, not the URIs inside a Contact: this reads Contact and
Expires values and refuses what the grammar does not allow."""
import ipaddress
import re
from dataclasses import dataclass


class SipSyntaxError(ValueError):
    pass


# RFC 3261 section 25.1, character classes of the SIP-URI rules.
_UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
_ESCAPED = r"%[0-9A-Fa-f]{2}"
_USER = re.compile(rf"(?:[{_UNRESERVED}&=+$,;?/]|{_ESCAPED})+")
_PASSWORD = re.compile(rf"(?:[{_UNRESERVED}&=+$,]|{_ESCAPED})*")
# hostname / IPv4address: labels of letters, digits and inner hyphens, 63 at most, 253 in
# all. Laxer than RFC 3261 on one point, as the MDS addresses of the API always were: a
# last label may start with a digit, so an IPv4 address is one of these names too.
_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")
_PARAM = re.compile(rf"(?:[{_UNRESERVED}\[\]/:&+$]|{_ESCAPED})+"
                    rf"(?:=(?:[{_UNRESERVED}\[\]/:&+$]|{_ESCAPED})*)?")
_HEADER = re.compile(rf"(?:[{_UNRESERVED}\[\]/?:+$]|{_ESCAPED})+="
                     rf"(?:[{_UNRESERVED}\[\]/?:+$]|{_ESCAPED})*")
_PORT = re.compile(r"[0-9]{1,5}")


@dataclass(frozen=True)
class SipUri:
    scheme: str             # sip or sips
    user: str | None
    host: str               # an IPv6 address without its brackets
    port: int | None
    params: str             # ";name=value..." as written
    headers: str            # "?name=value&..." as written


def parse_uri(uri):
    """A SIP or SIPS URI by RFC 3261's grammar (section 25.1), or SipSyntaxError."""
    scheme, colon, rest = uri.partition(":")
    if not colon or scheme.lower() not in ("sip", "sips"):
        raise SipSyntaxError(f"not a SIP URI: {_shown(uri)}")
    user = None
    if "@" in rest:
        userinfo, _, rest = rest.partition("@")
        user, _, password = userinfo.partition(":")
        if not _USER.fullmatch(user) or not _PASSWORD.fullmatch(password):
            raise SipSyntaxError(f"bad user part in {_shown(uri)}")
    rest, qmark, headers = rest.partition("?")
    hostport, *params = rest.split(";")
    if rest.startswith("["):
        end = hostport.find("]")
        host, tail = hostport[1:end], hostport[end + 1:]
        if end < 0 or not _valid_ipv6(host):
            raise SipSyntaxError(f"bad IPv6 reference in {_shown(uri)}")
    else:
        host, _, port_text = hostport.partition(":")
        tail = hostport[len(host):]
        if not _HOSTNAME.fullmatch(host):
            raise SipSyntaxError(f"bad host in {_shown(uri)}")
    port = None
    if tail:
        if not tail.startswith(":") or not _PORT.fullmatch(tail[1:]) \
                or not 0 < int(tail[1:]) < 65536:
            raise SipSyntaxError(f"bad port in {_shown(uri)}")
        port = int(tail[1:])
    if not all(_PARAM.fullmatch(p) for p in params):
        raise SipSyntaxError(f"bad URI parameter in {_shown(uri)}")
    if qmark and not all(_HEADER.fullmatch(h) for h in headers.split("&")):
        raise SipSyntaxError(f"bad URI header in {_shown(uri)}")
    return SipUri(scheme.lower(), user, host, port,
                  "".join(f";{p}" for p in params), qmark + headers)


def _shown(uri):
    """A URI quoted in an error (and so in a reason phrase): never kilobytes of it."""
    return repr(uri if len(uri) <= 80 else uri[:77] + "...")


def _valid_ipv6(host):
    # A zone ID (fe80::1%eth0) means nothing to a remote SIP peer.
    if "%" in host:
        return False
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return True


def split_values(header_value):
    """Split a header value on commas that are outside quotes and angle brackets."""
    parts, current, quoted, angled, escaped = [], [], False, False, False
    for ch in header_value:
        if escaped:
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"' and not angled:
            quoted = not quoted
        elif not quoted and ch == "<":
            angled = True
        elif not quoted and ch == ">":
            angled = False
        elif ch == "," and not quoted and not angled:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    if quoted or angled:
        raise SipSyntaxError("unbalanced quote or angle bracket")
    parts.append("".join(current).strip())
    return [p for p in parts if p]


def header_block(fields):
    """Header lines, each ended by CRLF, of (name, value) pairs: the form tm's UAC
    functions (t_uac_send, the tm.t_uac_* RPCs) take."""
    return "".join(f"{name}: {value}\r\n" for name, value in fields)


def split_headers(values):
    """The comma-separated values of a header field that may also appear several times
    (RFC 3261 section 7.3.1), in order."""
    return [v for header in values for v in split_values(header)]


def parse_params(text):
    """';a=1;b' -> [("a", "1"), ("b", None)], names lowercased, quotes kept on values."""
    params = []
    for item in split_params(text):
        name, sep, value = item.partition("=")
        name = name.strip().lower()
        if not name:
            raise SipSyntaxError("empty parameter name")
        params.append((name, value.strip() if sep else None))
    return params


def split_params(text):
    items, current, quoted = [], [], False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == ";" and not quoted:
            items.append("".join(current))
            current = []
            continue
        current.append(ch)
    items.append("".join(current))
    return [i for i in (x.strip() for x in items) if i]


def parse_contact(value):
    """One Contact value -> (uri, [(param, value)]). '*' -> ('*', [])."""
    value = value.strip()
    if value == "*":
        return "*", []
    if "<" in value:
        start = value.index("<")
        end = value.find(">", start)
        if end < 0:
            raise SipSyntaxError("missing '>'")
        uri, rest = value[start + 1:end].strip(), value[end + 1:]
    else:
        uri, _, rest = value.partition(";")
        uri, rest = uri.strip(), ";" + rest if rest else ""
    parse_uri(uri)
    return uri, parse_params(rest)


def uri_host_port(uri):
    """(host, port) of a SIP URI, the port "5060" when it names none, to compare two
    addresses."""
    rest = uri.split(":", 1)[1].split(";", 1)[0].split("?", 1)[0]
    rest = rest.rsplit("@", 1)[-1]
    if rest.startswith("["):
        host, _, port = rest[1:].partition("]")
        port = port.lstrip(":")
    else:
        host, _, port = rest.partition(":")
    return host.lower(), port or "5060"


def format_params(params):
    return "".join(f";{n}" if v is None else f";{n}={v}" for n, v in params)


def parse_delta_seconds(text):
    text = text.strip()
    if not text.isdigit() or len(text) > 10:
        raise SipSyntaxError(f"bad expires value {text!r}")
    return int(text)
