// Drives Debian's chromium (playwright-core) on the reference UC Assistant page for
// tests/support/assistant.py, as a person would: clicks, typing and keys on elements
// found by their role and accessible name or their label. One JSON request per line on
// stdin, one JSON reply per line on stdout, in order:
//   {"op": "open", "profile": "/tmp/...", "microphone": true}  the browser, no tab yet;
//        microphone false: every page asking for it is refused, as a person may
//   {"op": "tab", "tab": "a", "url": "https://..."}          a new tab on the page
//   {"op": "act", "tab": "a", "target": {...}, "action": "click", "args": []}
//        target: {"role": "button", "name": "Answer", "within": "#calls"} | {"label": ...}
//        | {"css": ...} | {"text": ...}; action: a playwright Locator method
//   {"op": "key", "tab": "a", "key": "Tab"}          the keyboard alone
//   {"op": "focused", "tab": "a"}                    the focused element's role and name
//   {"op": "unnamed", "tab": "a"}                    controls the accessibility tree names not
//   {"op": "eval", "tab": "a", "expr": "..."}        an expression's JSON value in the page
//   {"op": "route_abort", "tab": "a", "pattern": "**/api/**"}   as if the network failed
//   {"op": "refuse_websockets", "tab": "a"}          as if the proxy's WebSocket were down
//   {"op": "screenshot", "tab": "a", "path": "..."}
//   {"op": "close", "tab": "a"}                      closes the tab, without logging out
//   {"op": "quit"}
// Replies: {"ok": true, "result": ...} or {"ok": false, "error": "..."}.
// Each tab's console and errors go to stderr, which the test keeps in a log file.
import { chromium } from 'playwright-core';
import { serve as serveRequests } from './serve.mjs';

const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--use-fake-device-for-media-stream',
  // the proxy's certificate is self-signed: accepted by this test browser only
  '--ignore-certificate-errors',
  // rtpengine's ICE candidate is a loopback address, which WebRTC skips by default
  '--allow-loopback-in-peer-connection',
  // a name that is no secure context (not loopback, not HTTPS) for the same proxy
  '--host-resolver-rules=MAP insecure.test 127.0.0.1',
  // two tabs take calls at once: neither is throttled as a background tab
  '--disable-background-timer-throttling', '--disable-renderer-backgrounding',
  '--disable-backgrounding-occluded-windows',
];
// Roles a person operates: each needs an accessible name.
const CONTROLS = new Set(['button', 'textbox', 'searchbox', 'combobox', 'checkbox', 'radio',
                          'link', 'spinbutton', 'slider', 'switch', 'listbox', 'menuitem', 'tab']);

let context = null;
const tabs = new Map();

function locate(page, { role, name, exact = true, label, css, text, within }) {
  const scope = within ? page.locator(within) : page;
  if (role) return scope.getByRole(role, name === undefined ? {} : { name, exact });
  if (label) return scope.getByLabel(label, { exact: true });
  if (text) return scope.getByText(text);
  return scope.locator(css);
}

function tab(name) {
  const page = tabs.get(name);
  if (!page) throw new Error(`no tab ${name}`);
  return page;
}

const ops = {
  async open({ profile, microphone }) {
    // a fake microphone, and the permission prompt answered yes without showing it
    const args = microphone ? [...CHROMIUM_ARGS, '--use-fake-ui-for-media-stream'] : CHROMIUM_ARGS;
    context = await chromium.launchPersistentContext(profile, {
      executablePath: '/usr/bin/chromium', headless: true, args,
      ignoreHTTPSErrors: true, viewport: { width: 1100, height: 820 },
    });
    for (const page of context.pages()) await page.close();
    return null;
  },
  async tab({ tab: name, url }) {
    const page = await context.newPage();
    page.on('console', (m) => process.stderr.write(`[${name}] console.${m.type()}: ${m.text()}\n`));
    page.on('pageerror', (e) => process.stderr.write(`[${name}] pageerror: ${e.stack || e}\n`));
    tabs.set(name, page);
    await page.goto(url);
    return null;
  },
  async act({ tab: name, target, action, args = [] }) {
    return locate(tab(name), target)[action](...args);
  },
  async key({ tab: name, key }) {
    await tab(name).keyboard.press(key);
    return null;
  },
  async focused({ tab: name }) {
    return tab(name).evaluate(() => {
      const el = document.activeElement;
      const name = el.getAttribute('aria-label')
        || (el.labels && el.labels[0] && el.labels[0].textContent) || el.textContent;
      return { tag: el.tagName.toLowerCase(), name: (name || '').trim() };
    });
  },
  async unnamed({ tab: name }) {
    const page = tab(name);
    const cdp = await context.newCDPSession(page);
    const { nodes } = await cdp.send('Accessibility.getFullAXTree');
    await cdp.detach();
    const controls = nodes.filter((n) => !n.ignored && n.role && CONTROLS.has(n.role.value));
    return { controls: controls.length,
             unnamed: controls.filter((n) => !(n.name && String(n.name.value).trim()))
               .map((n) => n.role.value) };
  },
  async eval({ tab: name, expr }) {
    return tab(name).evaluate(expr);
  },
  async route_abort({ tab: name, pattern }) {
    await tab(name).route(pattern, (route) => route.abort('connectionrefused'));
    return null;
  },
  async refuse_websockets({ tab: name }) {
    await tab(name).routeWebSocket(/.*/, (ws) => ws.close({ code: 1006 }));
    return null;
  },
  async screenshot({ tab: name, path }) {
    await tab(name).screenshot({ path, fullPage: true, animations: 'disabled' });
    return null;
  },
  async close({ tab: name }) {
    await tab(name).close();
    tabs.delete(name);
    return null;
  },
  async quit() {
    if (context) await context.close();
    return null;
  },
};

await serveRequests(ops);
