"""Message-waiting sent again (contract section 5): the proxy keeps the last
message-summary an MDS sent for a user and sends it again to a device that registers
anew and to the effective device after a device change."""
import pytest

from tests.support.baresip import Baresip
from tests.support.devices import browser, wait_until

pytestmark = pytest.mark.usefixtures("quiet_log")


def test_a_browser_that_logs_in_gets_the_last_message_summary_at_once(site):
    outcome = site.mds_calls("1000", scenario="mds_mwi_notify").run()
    tab = browser(site)
    assert wait_until(lambda: tab.requests("NOTIFY"), 3)
    notify = tab.requests("NOTIFY")[0]
    assert notify.header("Event") == "message-summary"
    assert notify.header("Content-Type") == "application/simple-message-summary"
    assert "Voice-Message: 2/0 (0/0)" in notify.body
    # A refresh of the same registration is no new device: nothing again.
    assert tab.register().status == 200
    assert not wait_until(lambda: len(tab.requests("NOTIFY")) > 1, 1)
    tab.close()


def test_the_effective_device_gets_it_again_after_a_device_change(site, tmp_path):
    phone = Baresip(tmp_path, "1000", "secret", site.proxy.sip_addr)
    phone.start()
    try:
        phone.wait_registered()
        tab = browser(site)
        outcome = site.mds_calls("1000", scenario="mds_mwi_notify").run()
        assert outcome.ok, outcome.describe()
        assert wait_until(lambda: len(phone.received("NOTIFY")) == 1, 3)
        assert site.proxy.select_device("1000", "deskphone")[1]["effective"] == "deskphone"
        assert wait_until(lambda: len(phone.received("NOTIFY")) == 2, 3)
        _, again = phone.received("NOTIFY")[1]
        assert "Voice-Message: 2/0 (0/0)" in again.body
        assert again.header("From").count(";tag=") == 1, again.header("From")
        assert len(tab.requests("NOTIFY")) == 1     # the browser is not the effective device
        tab.close()
    finally:
        phone.stop()
