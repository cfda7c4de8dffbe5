"""The little SIP syntax the decisions need: splitting header values and name-addr
parameters (RFC 3261 sections 20.10 and 25.1). Kamailio has already checked the
message's basic syntax; this reads Contact and Expires values."""


class SipSyntaxError(ValueError):
    pass


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
    if not (uri.lower().startswith("sip:") or uri.lower().startswith("sips:")):
        raise SipSyntaxError(f"unsupported contact URI {uri!r}")
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
