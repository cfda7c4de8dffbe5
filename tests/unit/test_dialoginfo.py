"""RFC 4235 dialog-info bodies for the presence states (contract section 7)."""
import xml.etree.ElementTree as ET

import pytest

from lib.decisions.dialoginfo import CONTENT_TYPE, NAMESPACE, dialog_info_xml, parse_dialog_states

NS = "{urn:ietf:params:xml:ns:dialog-info}"
ENTITY = "sip:1000@example.org"


def parse(doc):
    return ET.fromstring(doc.encode("utf-8"))


def test_constants():
    assert CONTENT_TYPE == "application/dialog-info+xml"
    assert NAMESPACE == "urn:ietf:params:xml:ns:dialog-info"


@pytest.mark.parametrize("state", ["available", "ringing", "in_use", "unavailable"])
def test_document_root_namespace_version_entity(state):
    root = parse(dialog_info_xml(ENTITY, 7, state))
    assert root.tag == NS + "dialog-info"
    assert root.get("version") == "7"
    assert root.get("state") == "full"
    assert root.get("entity") == ENTITY


@pytest.mark.parametrize("state", ["available", "unavailable"])
def test_idle_states_have_no_dialog(state):
    doc = dialog_info_xml(ENTITY, 0, state)
    root = parse(doc)
    assert list(root) == []
    assert "<dialog " not in doc and "<dialog>" not in doc
    assert parse_dialog_states(doc) == []


def test_ringing_is_one_early_dialog_as_recipient():
    doc = dialog_info_xml(ENTITY, 1, "ringing")
    dialogs = parse(doc).findall(NS + "dialog")
    assert len(dialogs) == 1
    assert dialogs[0].get("id") == "ua"
    assert dialogs[0].get("direction") == "recipient"
    assert [c.tag for c in dialogs[0]] == [NS + "state"]
    assert parse_dialog_states(doc) == ["early"]


def test_in_use_is_one_confirmed_dialog():
    doc = dialog_info_xml(ENTITY, 2, "in_use", dialog_id="call-42")
    dialogs = parse(doc).findall(NS + "dialog")
    assert len(dialogs) == 1
    assert dialogs[0].get("id") == "call-42"
    assert dialogs[0].get("direction") is None
    assert parse_dialog_states(doc) == ["confirmed"]


def test_exact_text_of_the_available_document():
    assert dialog_info_xml(ENTITY, 3, "available") == (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="3" state="full"'
        ' entity="sip:1000@example.org"/>')


def test_exact_text_of_the_ringing_document():
    assert dialog_info_xml(ENTITY, 4, "ringing").endswith(
        '<dialog id="ua" direction="recipient"><state>early</state></dialog></dialog-info>')


def test_entity_and_dialog_id_are_escaped():
    entity = 'sip:a&b<c>"d\'@example.org'
    doc = dialog_info_xml(entity, 1, "in_use", dialog_id='x"&<y')
    assert "a&b" not in doc
    root = parse(doc)
    assert root.get("entity") == entity
    assert root.find(NS + "dialog").get("id") == 'x"&<y'
    # always double-quoted attributes
    assert 'entity="sip:a&amp;b&lt;c&gt;&quot;d\'@example.org"' in doc
    assert 'id="x&quot;&amp;&lt;y"' in doc


def test_whitespace_in_the_entity_survives_a_round_trip():
    entity = "sip:a\tb\nc@example.org"
    assert parse(dialog_info_xml(entity, 1, "available")).get("entity") == entity


def test_unknown_state_is_a_value_error():
    with pytest.raises(ValueError):
        dialog_info_xml(ENTITY, 1, "busy")
    with pytest.raises(ValueError):
        dialog_info_xml(ENTITY, 1, "")


@pytest.mark.parametrize("version", [-1, "1", 1.0, True])
def test_bad_version_is_a_value_error(version):
    with pytest.raises(ValueError):
        dialog_info_xml(ENTITY, version, "available")


def test_large_versions_are_written_as_is():
    assert parse(dialog_info_xml(ENTITY, 2 ** 32, "available")).get("version") == str(2 ** 32)


def test_parse_dialog_states_keeps_document_order():
    doc = (f'<dialog-info xmlns="{NAMESPACE}" version="1" state="full" entity="{ENTITY}">'
           '<dialog id="a"><state>confirmed</state></dialog>'
           '<dialog id="b" direction="recipient"><state> early </state></dialog>'
           '<dialog id="c"><state>terminated</state></dialog></dialog-info>')
    assert parse_dialog_states(doc) == ["confirmed", "early", "terminated"]


def test_parse_dialog_states_rejects_other_documents():
    with pytest.raises(ValueError):
        parse_dialog_states("<dialog-info")
    with pytest.raises(ValueError):
        parse_dialog_states('<dialog-info version="1"/>')  # no namespace
