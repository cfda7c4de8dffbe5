// Drives Debian's chromium (playwright-core) for tests/support/browser.py: one JSON
// request per line on stdin, one JSON reply per line on stdout, in order.
//   {"op": "open", "host": "127.0.0.50", "profile": "/tmp/..."} -> {"url": ...}
//   {"op": "call", "fn": "login", "args": [{...}]}  -> what window.softphone.fn returned
//   {"op": "close_page"}   closes the tab as a user would, without logging out
//   {"op": "quit"}
// Replies: {"ok": true, "result": ...} or {"ok": false, "error": "..."}.
// The page's console and errors go to stderr, which the test keeps in a log file.
import { readFile } from 'node:fs/promises';
import { serve as serveRequests } from './serve.mjs';
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { chromium } from 'playwright-core';

const here = (name) => fileURLToPath(new URL(name, import.meta.url));

const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
  // the proxy's WSS certificate is self-signed: accepted by this test browser only
  '--ignore-certificate-errors',
  // rtpengine's ICE candidate is a loopback address, which WebRTC skips by default
  '--allow-loopback-in-peer-connection',
];

let server = null;
let context = null;
let page = null;

// The page and its script (page.js bundled with JsSIP from node_modules), served over
// HTTP on a loopback address, which browsers count as a secure context (getUserMedia).
async function serve(host) {
  const files = {
    '/': { type: 'text/html', body: await readFile(here('page.html')) },
    '/page.js': {
      type: 'text/javascript',
      body: (await build({ entryPoints: [here('page.js')], bundle: true, write: false,
                           format: 'iife', logLevel: 'error' })).outputFiles[0].contents,
    },
  };
  server = http.createServer((req, res) => {
    const file = files[req.url];
    res.writeHead(file ? 200 : 404, { 'Content-Type': file ? file.type : 'text/plain' });
    res.end(file ? file.body : 'not found');
  });
  await new Promise((resolve, reject) => server.once('error', reject).listen(0, host, resolve));
  return `http://${host}:${server.address().port}/`;
}

const ops = {
  async open({ host, profile }) {
    const url = await serve(host);
    context = await chromium.launchPersistentContext(profile, {
      executablePath: '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS,
      ignoreHTTPSErrors: true,
    });
    page = context.pages()[0] || await context.newPage();
    page.on('console', (m) => process.stderr.write(`console.${m.type()}: ${m.text()}\n`));
    page.on('pageerror', (e) => process.stderr.write(`pageerror: ${e.stack || e}\n`));
    await page.goto(url);
    await page.waitForFunction(() => window.softphone);
    return { url, userAgent: await page.evaluate(() => navigator.userAgent) };
  },
  async call({ fn, args = [] }) {
    return page.evaluate(([name, values]) => window.softphone[name](...values), [fn, args]);
  },
  async close_page() {
    await page.close();
    page = null;
    return null;
  },
  async quit() {
    if (context) await context.close();
    if (server) server.close();
    return null;
  },
};

await serveRequests(ops);
