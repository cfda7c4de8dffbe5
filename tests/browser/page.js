// The UC Assistant as the browser tests need it: JsSIP registered over WSS, calls answered
// or placed with the (fake) microphone, their RTP statistics, and the device API.
// driver.mjs bundles this file with JsSIP and calls window.softphone's functions.
import JsSIP from 'jssip';

JsSIP.debug.enable('JsSIP:*');      // to the browser console, which driver.mjs logs

let ua = null;
// every call, received or placed, in order: {session, callId, incoming, confirmed, ended}
const calls = [];
// out-of-dialog NOTIFYs (message-waiting), in order: {event, body}
const notifies = [];
// the live event stream's events, in order: {event, data}
const events = [];

function until(check, timeoutMs, what) {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + timeoutMs;
    const poll = () => {
      const value = check();
      if (value) resolve(value);
      else if (Date.now() > deadline) reject(new Error(`${what}: not within ${timeoutMs} ms`));
      else setTimeout(poll, 20);
    };
    poll();
  });
}

async function login({ wss, domain, user, password }) {
  ua = new JsSIP.UA({
    sockets: [new JsSIP.WebSocketInterface(wss)],
    uri: `sip:${user}@${domain}`,
    password,
    register_expires: 600,
    session_timers: false,
  });
  let outcome = null;
  ua.on('registered', () => { outcome = { ok: true }; });
  ua.on('registrationFailed', (e) => { outcome = { ok: false, cause: e.cause }; });
  ua.on('sipEvent', ({ event, request }) => {
    notifies.push({ event: event && event.event, body: request.body });
  });
  ua.on('newRTCSession', ({ originator, session, request }) => {
    const call = { session, callId: request.call_id, incoming: originator === 'remote',
                   confirmed: false, ended: null };
    session.on('confirmed', () => { call.confirmed = true; });     // the ACK went through
    session.on('ended', (e) => { call.ended = { originator: e.originator, cause: e.cause }; });
    session.on('failed', (e) => { call.ended = { originator: e.originator, cause: e.cause, failed: true }; });
    calls.push(call);
  });
  ua.start();
  const result = await until(() => outcome, 10000, 'REGISTER');
  if (!result.ok) throw new Error(`registration failed: ${result.cause}`);
  return result;
}

// The index-th call (0 = the first; placed calls count too), once it has arrived.
async function incomingCall(index, timeoutMs) {
  const call = await until(() => calls[index], timeoutMs, `incoming call ${index}`);
  if (!call.incoming) throw new Error(`call ${index} was placed by the page`);
  return { callId: call.callId };
}

async function answer(index) {
  calls[index].session.answer({ mediaConstraints: { audio: true, video: false } });
  return confirmed(index, 10000);
}

// Places a call; returns at once (the callee answers later), with the call's index.
function dial(target) {
  ua.call(target, { mediaConstraints: { audio: true, video: false } });
  const index = calls.length - 1;     // newRTCSession ran inside ua.call
  return { index, callId: calls[index].callId };
}

// Once the ACK of the index-th call went through (answered, or answered by the callee).
async function confirmed(index, timeoutMs) {
  const call = calls[index];
  await until(() => call.confirmed || call.ended, timeoutMs, 'ACK');
  if (call.ended) throw new Error(`call ended before its ACK: ${JSON.stringify(call.ended)}`);
  return { callId: call.callId };
}

// The page hangs up (JsSIP sends the BYE and ends the call without waiting for its 200).
async function hangup(index) {
  calls[index].session.terminate();
  return ended(index, 1000);
}

// RTP packets counted by the peer connection (getStats) and its ICE/DTLS state.
async function stats(index) {
  const pc = calls[index].session.connection;
  const out = { inboundPackets: 0, outboundPackets: 0, connectionState: pc.connectionState };
  (await pc.getStats()).forEach((r) => {
    if (r.kind !== 'audio') return;
    if (r.type === 'inbound-rtp') out.inboundPackets += r.packetsReceived;
    if (r.type === 'outbound-rtp') out.outboundPackets += r.packetsSent;
  });
  return out;
}

async function ended(index, timeoutMs) {
  return until(() => calls[index].ended, timeoutMs, `end of call ${index}`);
}

function incomingCount() {
  return calls.filter((call) => call.incoming).length;
}

// What the UC Assistant does when the user picks a device: the API with the user's
// own Basic credentials (cross-origin, so a CORS preflight comes first).
async function selectDevice({ api, user, password, device }) {
  const response = await fetch(`${api}/api/v1/users/${user}/device`, {
    method: 'PUT',
    headers: { Authorization: `Basic ${btoa(`${user}:${password}`)}`,
               'Content-Type': 'application/json' },
    body: JSON.stringify({ device }),
  });
  return { status: response.status, body: await response.json() };
}

// The UC Assistant's live view: the event stream read with fetch and the user's own
// credentials (EventSource cannot send an Authorization header), kept in `events`.
async function watchEvents({ api, user, password }) {
  const response = await fetch(`${api}/api/v1/users/${user}/events`, {
    headers: { Authorization: `Basic ${btoa(`${user}:${password}`)}` },
  });
  if (response.status !== 200) throw new Error(`event stream: HTTP ${response.status}`);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  (async () => {
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = /^event: (.*)$/m.exec(block);
        const data = /^data: (.*)$/m.exec(block);
        if (event && data) events.push({ event: event[1], data: JSON.parse(data[1]) });
      }
    }
  })();
  return { status: response.status };
}

function eventsSeen() {
  return events;
}

function notifiesSeen() {
  return notifies;
}

window.softphone = { login, incomingCall, answer, dial, confirmed, hangup, stats, ended,
                      incomingCount, selectDevice, watchEvents, eventsSeen, notifiesSeen };
