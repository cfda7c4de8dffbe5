"""The reference UC Assistant page (web/, served by the API server) in a real browser, used
as a person uses it: tests/browser/assistant.mjs (Node, playwright-core) runs Debian's
headless chromium, and this class sends it clicks, typing and keys on elements found by
role and accessible name or by label. Tabs are named; their console goes to
`<workdir>/browser.log`.

    with Assistant(tmp_path) as browser:
        a = browser.tab("a", proxy.api_https_url + "/")
        a.login("1000", "secret")
        a.click("button", "Answer", within="#softphone")
"""
import re
import shutil
import time

from tests.support.browser import ROOT, Softphone

DRIVER = ROOT / "tests" / "browser" / "assistant.mjs"


class Assistant(Softphone):
    """The browser: one chromium with a fresh profile, any number of tabs. microphone
    False: the browser refuses it to every page."""

    def __init__(self, workdir, microphone=True):
        super().__init__(workdir, DRIVER)
        profile = self.workdir / "chromium-profile"
        shutil.rmtree(profile, ignore_errors=True)
        self.request("open", profile=str(profile), microphone=microphone, timeout=60)

    def tab(self, name, url):
        """A new tab on the page, once it shows its login form (or its error)."""
        self.request("tab", tab=name, url=url, timeout=30)
        tab = Tab(self, name)
        tab.act({"css": "#login:not([hidden]), #error:not([hidden]) >> nth=0"}, "waitFor",
                {"state": "visible", "timeout": 10000}, timeout=15)
        return tab


class Tab:
    def __init__(self, browser, name):
        self.browser = browser
        self.name = name

    def _do(self, op, timeout=30, **fields):
        return self.browser.request(op, tab=self.name, timeout=timeout, **fields)

    def act(self, target, action, *args, timeout=30):
        return self._do("act", target=target, action=action, args=list(args), timeout=timeout)

    def click(self, role, name, within=None):
        self.act({"role": role, "name": name, "within": within}, "click")

    def fill(self, label, text):
        self.act({"label": label}, "fill", text)

    def text(self, css):
        """The visible text of the element `css` names (one element)."""
        return self.act({"css": css}, "innerText")

    def visible(self, css):
        return self.act({"css": css}, "isVisible")

    def wait_text(self, css, pattern, timeout=5.0):
        """The text of `css` once it matches the regular expression `pattern`."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.text(css) if self.act({"css": css}, "count") == 1 else ""
            if re.search(pattern, found):
                return found
            assert time.monotonic() < deadline, \
                f"{self.name} {css}: {pattern!r} not within {timeout} s; it shows {found!r}"
            time.sleep(0.1)

    def key(self, key):
        self._do("key", key=key)

    def focused(self):
        return self._do("focused")

    def tab_to(self, name, presses=60):
        """Presses Tab until the control named `name` has the focus (the keyboard alone)."""
        for _ in range(presses):
            if self.focused()["name"] == name:
                return
            self.key("Tab")
        raise AssertionError(f"{self.name}: {name!r} not reached with Tab in {presses} presses")

    def unnamed_controls(self):
        return self._do("unnamed")

    def eval(self, expr):
        return self._do("eval", expr=expr)

    def screenshot(self, path):
        self._do("screenshot", path=str(path))

    def abort_requests(self, pattern):
        self._do("route_abort", pattern=pattern)

    def refuse_websockets(self):
        self._do("refuse_websockets")

    def close(self):
        """Closes the tab as a person would: no un-REGISTER, the WebSocket just goes."""
        self._do("close")

    def login(self, number, password):
        self.fill("Number", number)
        self.fill("SIP password", password)
        self.click("button", "Log in")
        self.act({"css": "#app:not([hidden]), #error:not([hidden]) >> nth=0"}, "waitFor",
                 {"state": "visible", "timeout": 15000}, timeout=20)
        assert self.visible("#app"), f"{self.name}: not logged in: {self.text('#error')}"
