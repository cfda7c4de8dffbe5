// The UC Assistant as the browser test needs it: JsSIP registered over WSS, incoming
// calls answered with the (fake) microphone, their RTP statistics, and the device API.
// driver.mjs bundles this file with JsSIP and calls window.softphone's functions.
import JsSIP from 'jssip';

JsSIP.debug.enable('JsSIP:*');      // to the browser console, which driver.mjs logs

let ua = null;
const calls = [];                   // every incoming call: {session, callId, confirmed, ended}

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
  ua.on('newRTCSession', ({ originator, session, request }) => {
    if (originator !== 'remote') return;
    const call = { session, callId: request.call_id, confirmed: false, ended: null };
    session.on('confirmed', () => { call.confirmed = true; });     // the ACK arrived
    session.on('ended', (e) => { call.ended = { originator: e.originator, cause: e.cause }; });
    session.on('failed', (e) => { call.ended = { originator: e.originator, cause: e.cause, failed: true }; });
    calls.push(call);
  });
  ua.start();
  const result = await until(() => outcome, 10000, 'REGISTER');
  if (!result.ok) throw new Error(`registration failed: ${result.cause}`);
  return result;
}

// The index-th incoming call (0 = the first), once it has arrived.
async function incomingCall(index, timeoutMs) {
  const call = await until(() => calls[index], timeoutMs, `incoming call ${index}`);
  return { callId: call.callId };
}

async function answer(index) {
  const call = calls[index];
  call.session.answer({ mediaConstraints: { audio: true, video: false } });
  await until(() => call.confirmed || call.ended, 10000, 'ACK');
  if (call.ended) throw new Error(`call ended while answering: ${JSON.stringify(call.ended)}`);
  return { callId: call.callId };
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
  return calls.length;
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

window.softphone = { login, incomingCall, answer, stats, ended, incomingCount, selectDevice };
