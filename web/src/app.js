// The reference UC Assistant (contract section 13): log in with number and SIP password,
// the browser becomes the user's WebRTC device, the seed's Device selection menu, the
// deskphone's calls controlled from here (section 12), the mixed history, colleagues'
// presence and waiting messages, live. Nothing is kept once the tab closes.
import { Api } from './api.js';
import { Phone } from './phone.js';
import { callInWords, deviceInWords, deviceName, duration, outcomeInWords,
         presenceInWords, registeredInWords, voicemailInWords } from './words.js';

const HISTORY_LIMIT = 20;
// Colleagues' presence is polled: the event stream carries the user's own state only.
const PRESENCE_POLL_MS = 1000;
const STREAM_RETRY_MS = 2000;

const $ = (id) => document.getElementById(id);
let config = null;
let session = null;       // {number, api, phone, stop: AbortController, device, timers}

// --- messages to the person --------------------------------------------------------

function showError(text) {
  $('error').textContent = text || '';
  $('error').hidden = !text;
}

function notify(text) {
  $('notice').textContent = text || '';
}

// Runs a user action: its failure is shown in words, never lost.
function acting(fn) {
  return async (...args) => {
    showError('');
    try {
      await fn(...args);
    } catch (err) {
      showError((err && err.message) || String(err));
    }
  };
}

window.addEventListener('error', (e) => showError(`Something went wrong in the page: ${e.message}`));
window.addEventListener('unhandledrejection', (e) =>
  showError(`Something went wrong in the page: ${e.reason && e.reason.message || e.reason}`));

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === 'text') node.textContent = value;
    else if (key === 'onclick') node.addEventListener('click', value);
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

// --- logging in and out --------------------------------------------------------------

function socketUrl() {
  const secure = location.protocol === 'https:';
  return `${secure ? 'wss' : 'ws'}://${location.hostname}:${secure ? config.wss_port : config.ws_port}/ws`;
}

async function login(event) {
  event.preventDefault();
  const number = $('login-number').value.trim();
  const password = $('login-password').value;
  $('login-password').value = '';
  $('login-submit').disabled = true;
  notify('Logging in…');
  let current = null;
  try {
    const api = new Api(number, password);
    await api.device();          // the credentials checked before the browser registers
    current = { number, api, stop: new AbortController(), timers: [],
                deskCalls: new Map(), colleagues: new Map(), callViews: new Map() };
    current.phone = new Phone({
      url: socketUrl(), domain: config.domain, number, password,
      onCall: (call) => phoneCall(current, call),
      onChange: (call) => renderPhoneCall(current, call),
      onLost: (text) => notify(text),
    });
    await current.phone.start();
    current.device = await api.device();        // now with this browser registered
    session = current;
  } catch (err) {
    if (current && current.phone) current.phone.stop();    // registered, then the API failed
    notify('');
    $('login-submit').disabled = false;
    throw err;
  }
  $('login-submit').disabled = false;
  notify('');
  $('login').hidden = true;
  $('app').hidden = false;
  $('logout').hidden = false;
  $('whoami').hidden = false;
  renderWho();
  renderDevice(session.device);
  watchEvents(session);
  refreshHistory(session);
  session.timers.push(setInterval(() => pollColleagues(session), PRESENCE_POLL_MS));
  session.timers.push(setInterval(() => tickCalls(session), 1000));
  $('dial-number').focus();
}

function logout() {
  const ending = session;
  session = null;
  ending.stop.abort();
  ending.timers.forEach(clearInterval);
  ending.phone.stop();
  for (const id of ['softphone', 'calls', 'colleagues']) $(id).replaceChildren();
  $('history').querySelector('tbody').replaceChildren();
  $('voicemail-count').textContent = 'No waiting messages known yet.';
  $('app').hidden = true;
  $('logout').hidden = true;
  $('whoami').hidden = true;
  $('login').hidden = false;
  notify('Logged out: calls ring your deskphone.');
  $('login-number').focus();
}

function renderWho(presence) {
  const s = session;
  const registered = s.phone.registered ? 'this browser is registered' : 'this browser is not registered';
  $('whoami').textContent = `${s.number} · ${registered}` +
    (presence ? ` · your presence: ${presenceInWords(presence.state).toLowerCase()}` : '');
}

// --- device selection (contract section 3) ---------------------------------------------

function renderDevice(device) {
  session.device = device;
  for (const radio of document.querySelectorAll('input[name="device"]')) {
    radio.checked = radio.value === device.selected;
  }
  $('device-effective').textContent = deviceInWords(device);
  $('device-effective').dataset.effective = device.effective || 'none';
  $('device-registered').textContent = registeredInWords(device.registered);
  const desk = device.effective === 'deskphone';
  $('dial-call').textContent = desk ? 'Call from the deskphone' : 'Call';
  document.body.classList.toggle('deskphone-mode', desk);
}

async function selectDevice(event) {
  const s = session;
  try {
    renderDevice(await s.api.selectDevice(event.target.value));
  } catch (err) {
    renderDevice(s.device);       // the menu shows what is stored, not the refused choice
    throw err;
  }
}

// --- the live event stream (contract section 12) -----------------------------------

async function watchEvents(s) {
  let broken = null;              // what the page said when the stream failed
  while (session === s) {
    s.deskCalls.clear();          // the stream starts with the calls in progress now
    try {
      await s.api.events((name, data) => {
        if (broken && $('notice').textContent === broken) notify('');
        broken = null;
        onEvent(s, name, data);
      }, s.stop.signal);
    } catch (err) {
      if (session === s) notify(broken = err.message);
    }
    if (session !== s) return;
    await new Promise((resolve) => setTimeout(resolve, STREAM_RETRY_MS));
  }
}

function onEvent(s, name, data) {
  if (session !== s) return;
  if (name === 'device') renderDevice(data);
  else if (name === 'presence') renderWho(data);
  else if (name === 'voicemail') $('voicemail-count').textContent = voicemailInWords(data);
  else if (name === 'call') {
    if (data.state === 'ended') {
      s.deskCalls.delete(data.id);
      refreshHistory(s);
    } else s.deskCalls.set(data.id, data);
    renderDeskCalls(s);
  }
}

// --- calls in progress on either device, the deskphone's controlled from here ---------

function renderDeskCalls(s) {
  const list = $('calls');
  const rows = new Map([...list.children].map((row) => [row.dataset.id, row]));
  for (const [id, call] of s.deskCalls) {
    let row = rows.get(id);
    if (!row) {
      const label = el('span', { class: 'what', id: `call-${id}` });
      const answer = el('button', { type: 'button', class: 'go', 'aria-describedby': `call-${id}`,
                                    text: 'Answer' });
      const hangup = el('button', { type: 'button', class: 'stop', 'aria-describedby': `call-${id}` });
      answer.addEventListener('click', acting(async () => {
        await s.api.answer(id);
        notify('Answering on the deskphone: it picks up by itself if it can.');
      }));
      hangup.addEventListener('click', acting(() => s.api.hangup(id)));
      row = el('li', { 'data-id': id }, label, el('span', { class: 'actions' }, answer, hangup));
      list.append(row);
    }
    rows.delete(id);
    row.querySelector('.what').textContent = callInWords(call);
    const [answer, hangup] = row.querySelectorAll('button');
    // The browser's own calls are answered and hung up in the Phone panel.
    const desk = call.device === 'deskphone' || call.device === null;
    answer.hidden = !(desk && call.direction === 'in' && call.state === 'ringing');
    hangup.hidden = !desk;
    hangup.textContent = call.state === 'answered' ? 'Hang up'
      : call.direction === 'in' ? 'Decline' : 'Cancel';
  }
  for (const row of rows.values()) row.remove();
  $('calls-empty').hidden = s.deskCalls.size > 0;
}

async function dial(event) {
  event.preventDefault();
  const s = session;
  const number = $('dial-number').value.trim();
  if (!number) throw new Error('Type a number to call.');
  if (s.device.effective === 'deskphone') {
    await s.api.dial(number);
    notify(`Your deskphone rings: it picks up by itself (or pick it up) and calls ${number}.`);
  } else s.phone.dial(number);
}

async function callVoicemail() {
  const s = session;
  const number = config.voicemail_number;
  if (s.device.effective !== 'deskphone') {
    s.phone.dial(number);
    return;
  }
  await s.api.dial(number);
  notify('Your deskphone rings: it calls your voicemail once picked up.');
}

// --- the browser's own calls (the softphone) ---------------------------------------

function phoneCall(s, call) {
  // only the title speaks up: the meta line changes every second during a call
  const title = el('p', { class: 'title', 'aria-live': 'assertive' });
  const meta = el('p', { class: 'meta' });
  const answer = el('button', { type: 'button', class: 'go', text: 'Answer' });
  const decline = el('button', { type: 'button', class: 'stop', text: 'Decline' });
  const mute = el('button', { type: 'button', text: 'Mute' });
  const hangup = el('button', { type: 'button', class: 'stop', text: 'Hang up' });
  answer.addEventListener('click', acting(() => {
    s.phone.answer(call);
    hangup.focus();             // the keyboard goes on from the button that was pressed
  }));
  decline.addEventListener('click', acting(() => s.phone.hangup(call)));
  hangup.addEventListener('click', acting(() => s.phone.hangup(call)));
  mute.addEventListener('click', acting(() => s.phone.toggleMute(call)));
  const view = el('div', { class: 'call', role: 'group', 'aria-label': 'Call' }, title, meta,
                  el('div', { class: 'actions' }, answer, decline, mute, hangup));
  s.callViews.set(call, { view, title, meta, answer, decline, mute, hangup });
  // the last ended call's words stay until the next call
  for (const [other, old] of s.callViews) if (other.ended) { old.view.remove(); s.callViews.delete(other); }
  $('softphone').append(view);
  renderPhoneCall(s, call);
}

function renderPhoneCall(s, call) {
  const v = s.callViews.get(call);
  if (!v) return;
  const who = call.name && call.name !== call.peer ? `${call.name} (${call.peer})` : call.peer;
  v.title.textContent = {
    ringing: `Incoming call from ${who}`,
    answering: `Answering ${who}…`,
    calling: `Calling ${who}…`,
    'ringing back': `Calling ${who}: it rings…`,
    answered: `In call with ${who}`,
    ended: `Call with ${who} ended`,
  }[call.state];
  v.view.dataset.state = call.state;
  const ringing = call.incoming && call.state === 'ringing';
  v.answer.hidden = !ringing;
  v.decline.hidden = !ringing;
  v.mute.hidden = call.state !== 'answered';
  v.hangup.hidden = ringing || call.state === 'ended';
  v.mute.textContent = call.muted ? 'Unmute' : 'Mute';
  if (call.state === 'ended') {
    v.meta.textContent = call.ended;
    if (call.cause === 'User Denied Media Access') showError(call.ended);
  } else if (call.state === 'answered') {
    const stats = call.stats ? ` · audio: ${call.stats.received} packets received, ${call.stats.sent} sent` : '';
    v.meta.textContent = `${duration((Date.now() - call.since) / 1000)}${call.muted ? ' · muted' : ''}${stats}`;
  } else v.meta.textContent = '';
}

async function tickCalls(s) {
  for (const call of s.phone.calls) {
    if (call.state !== 'answered') continue;
    call.stats = await s.phone.stats(call);
    renderPhoneCall(s, call);
  }
}

// --- history (contract section 8) --------------------------------------------------

function when(iso) {
  const date = new Date(iso);
  const today = new Date().toDateString() === date.toDateString();
  return today ? date.toLocaleTimeString() : date.toLocaleString();
}

async function refreshHistory(s) {
  let entries;
  try {
    entries = await s.api.history(HISTORY_LIMIT);
  } catch (err) {
    if (session === s) showError(err.message);
    return;
  }
  if (session !== s) return;
  const rows = entries.map((h) => el('tr', { 'data-call-id': h.call_id },
    el('td', { text: when(h.started_at) }),
    el('td', { text: h.direction === 'in' ? '↙ In' : '↗ Out' }),
    el('td', { text: h.peer || '—' }),
    el('td', { text: deviceName(h.device) }),
    el('td', { text: outcomeInWords(h) })));
  $('history').querySelector('tbody').replaceChildren(...rows);
  $('history').hidden = entries.length === 0;
  $('history-empty').hidden = entries.length > 0;
}

// --- colleagues' presence (contract section 7) -------------------------------------

async function watchColleague(event) {
  event.preventDefault();
  const s = session;
  const number = $('watch-number').value.trim();
  if (!/^[0-9]{1,20}$/.test(number)) throw new Error('A colleague\'s number is 1 to 20 digits.');
  if (s.colleagues.has(number)) return;
  const presence = await s.api.presence(number);      // an unknown number is refused here
  const state = el('span', { class: 'state' });
  const remove = el('button', { type: 'button', 'aria-label': `Stop watching ${number}`, text: '✕' });
  const row = el('li', { 'data-number': number }, el('span', { class: 'dot', 'aria-hidden': 'true' }),
                 el('span', { class: 'what', text: number }), state, remove);
  remove.addEventListener('click', () => { s.colleagues.delete(number); row.remove(); });
  s.colleagues.set(number, { row, state });
  $('colleagues').append(row);
  $('watch-number').value = '';
  renderColleague(s, number, presence);
}

function renderColleague(s, number, presence) {
  const c = s.colleagues.get(number);
  if (!c) return;
  c.row.dataset.state = presence ? presence.state : 'unknown';
  c.state.textContent = presence
    ? `${presenceInWords(presence.state)}${presence.device ? ` (${deviceName(presence.device)})` : ''}`
    : 'Unknown: the proxy did not answer';
}

async function pollColleagues(s) {
  if (s.polling) return;        // a slow proxy: one round at a time
  s.polling = true;
  await Promise.all([...s.colleagues.keys()].map(async (number) => {
    let presence = null;
    try { presence = await s.api.presence(number); } catch (err) { presence = null; }
    if (session === s) renderColleague(s, number, presence);
  }));
  s.polling = false;
}

// --- start -------------------------------------------------------------------------

function keypad(event) {
  const key = event.target.closest('button[data-key]');
  if (!key) return;
  $('dial-number').value += key.dataset.key;
}

async function start() {
  try {
    const response = await fetch('config.json', { cache: 'no-store' });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    config = await response.json();
  } catch (err) {
    showError(`The proxy is unreachable (${err.message}): reload the page once it runs.`);
    return;
  }
  $('login').addEventListener('submit', acting(login));
  $('logout').addEventListener('click', acting(logout));
  $('device-choice').addEventListener('change', acting(selectDevice));
  $('dial').addEventListener('submit', acting(dial));
  $('dial-erase').addEventListener('click', () => {
    $('dial-number').value = $('dial-number').value.slice(0, -1);
  });
  document.querySelector('.keypad').addEventListener('click', keypad);
  $('voicemail-call').addEventListener('click', acting(callVoicemail));
  $('watch').addEventListener('submit', acting(watchColleague));
  $('login').hidden = false;
  $('login-number').focus();
  if (!window.isSecureContext) {
    showError('Browsers give the microphone to secure pages only: open this page with https:// (the API\'s HTTPS port).');
  }
}

start();
