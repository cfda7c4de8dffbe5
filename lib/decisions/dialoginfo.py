"""RFC 4235 dialog-info documents for the presence states of contract section 7.

Pure functions, standard library only:

    dialog_info_xml("sip:1000@example.org", 3, "ringing")
    -> '<?xml version="1.0" encoding="UTF-8"?>\\n'
       '<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="3" state="full"'
       ' entity="sip:1000@example.org"><dialog id="ua" direction="recipient">'
       '<state>early</state></dialog></dialog-info>'

Mapping (always a full-state document):
    available, unavailable  no <dialog> element
    ringing                 <dialog id=.. direction="recipient"><state>early</state>
    in_use                  <dialog id=..><state>confirmed</state>
"""
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

CONTENT_TYPE = "application/dialog-info+xml"
NAMESPACE = "urn:ietf:params:xml:ns:dialog-info"
STATES = ("available", "ringing", "in_use", "unavailable")

# presence state -> (dialog state, direction) of the single <dialog>, or None for none
_DIALOG = {
    "available": None,
    "unavailable": None,
    "ringing": ("early", "recipient"),
    "in_use": ("confirmed", None),
}


_ATTR_ENTITIES = {'"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"}


def _attr(value) -> str:
    """A double-quoted XML attribute value (&, <, >, ", and whitespace escaped)."""
    return '"' + escape(str(value), _ATTR_ENTITIES) + '"'


def dialog_info_xml(entity: str, version: int, state: str, dialog_id: str = "ua") -> str:
    """The application/dialog-info+xml body for `entity` (the watched user's SIP URI)
    in presence `state`, with document `version` (a non-negative integer, increasing
    with every NOTIFY of a subscription). Raises ValueError for an unknown state or a
    bad version. Attribute values are XML-escaped."""
    if state not in _DIALOG:
        raise ValueError(f"unknown presence state {state!r} (expected one of {', '.join(STATES)})")
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ValueError(f"version must be a non-negative integer, not {version!r}")
    head = (f'<dialog-info xmlns="{NAMESPACE}" version="{version}" state="full"'
            f" entity={_attr(entity)}")
    dialog = _DIALOG[state]
    if dialog is None:
        doc = head + "/>"
    else:
        dialog_state, direction = dialog
        attrs = f" id={_attr(dialog_id)}"
        if direction:
            attrs += f' direction="{direction}"'
        doc = f"{head}><dialog{attrs}><state>{dialog_state}</state></dialog></dialog-info>"
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + doc


def parse_dialog_states(xml: str) -> list[str]:
    """The <state> values of the document's <dialog> elements, in document order
    (empty for available/unavailable). Raises ValueError if it is not a dialog-info
    document (bad XML, or another root element/namespace)."""
    data = xml.encode("utf-8") if isinstance(xml, str) else xml
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        raise ValueError(f"not XML: {e}") from e
    if root.tag != f"{{{NAMESPACE}}}dialog-info":
        raise ValueError(f"not a dialog-info document: root element {root.tag!r}")
    ns = f"{{{NAMESPACE}}}"
    return [(s.text or "").strip() for s in root.findall(f"{ns}dialog/{ns}state")]
