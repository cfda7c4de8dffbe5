// The browser as the user's WebRTC device (contract sections 2 and 4): JsSIP registered
// over the proxy's WebSocket, its calls in and out with the microphone, and what went
// wrong said in words.
import JsSIP from 'jssip';

const MEDIA = { mediaConstraints: { audio: true, video: false } };
const REGISTER_TIMEOUT_MS = 10000;

// Why a call ended or failed, for a person (JsSIP's causes are English identifiers).
export function endedInWords(cause, originator) {
  const C = JsSIP.C.causes;
  switch (cause) {
    case C.USER_DENIED_MEDIA_ACCESS:
      return 'The browser refused the microphone: allow it for this page (the icon in the address bar) and try again.';
    case C.BUSY: return 'Busy.';
    case C.REJECTED: return originator === 'local' ? 'Declined.' : 'The call was refused.';
    case C.NOT_FOUND: return 'No such number.';
    case C.UNAVAILABLE: return 'Unavailable: nobody can take the call now.';
    case C.CANCELED: return originator === 'local' ? 'Cancelled.' : 'The caller hung up.';
    case C.NO_ANSWER: return 'No answer.';
    case C.BYE: return originator === 'local' ? 'You hung up.' : 'The other side hung up.';
    case C.CONNECTION_ERROR: return 'The connection to the proxy was lost.';
    case C.INCOMPATIBLE_SDP: case C.BAD_MEDIA_DESCRIPTION: case C.MISSING_SDP:
      return 'The call failed: no audio format in common.';
    case C.WEBRTC_ERROR: return 'The call failed: the browser could not set up the audio.';
    default: return `The call ended (${cause}).`;
  }
}

export class Phone {
  // onCall(call) when a call starts, onChange(call) on every change of one,
  // onLost(words) when the registration is lost after login.
  constructor({ url, domain, number, password, onCall, onChange, onLost }) {
    this.url = url;
    this.domain = domain;
    this.onCall = onCall;
    this.onChange = onChange;
    this.onLost = onLost;
    this.calls = [];
    this.registered = false;
    this.ua = new JsSIP.UA({
      sockets: [new JsSIP.WebSocketInterface(url)],
      uri: `sip:${number}@${domain}`,
      password,
      register_expires: 600,
      session_timers: false,
      user_agent: 'UA reference UC Assistant',
    });
    this.ua.on('newRTCSession', ({ originator, session, request }) =>
      this.track(session, originator === 'remote', request));
  }

  // Resolves once registered; rejects with an Error whose message is for the person.
  start() {
    return new Promise((resolve, reject) => {
      let settled = false;
      const settle = (error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (error) { this.stop(); reject(new Error(error)); } else resolve();
      };
      const timer = setTimeout(() => settle(
        `The proxy did not answer the browser's registration within ${REGISTER_TIMEOUT_MS / 1000} s.`),
      REGISTER_TIMEOUT_MS);
      this.ua.on('registered', () => {
        this.registered = true;
        settle(null);
      });
      this.ua.on('registrationFailed', ({ response, cause }) => {
        this.registered = false;
        const status = response && response.status_code;
        if (!settled) {
          settle(status === 403
            ? 'The proxy refused this browser as your device (403): your line does not allow a browser, or too many browser tabs are logged in.'
            : `The proxy refused the browser's registration (${status || cause}).`);
        } else this.onLost(`The browser is no longer registered (${status || cause}): calls ring your deskphone.`);
      });
      this.ua.on('disconnected', () => {
        if (!settled) {       // refused, failed, or closed before the registration
          const https = this.url.replace(/^wss:/, 'https:').replace(/\/ws$/, '/');
          settle(`The proxy's SIP WebSocket (${this.url}) is unreachable. With a self-signed certificate, open ${https} once and accept it, then log in again.`);
        } else if (settled && this.registered) {
          this.registered = false;
          this.onLost('The connection to the proxy was lost: reconnecting. Meanwhile calls ring your deskphone.');
        }
      });
      this.ua.on('connected', () => {
        // JsSIP registers again by itself once the WebSocket is back
        if (settled && !this.registered) this.ua.register();
      });
      this.ua.start();
    });
  }

  stop() {
    for (const call of this.calls) if (!call.ended) call.session.terminate();
    this.ua.stop();       // un-REGISTER, then the WebSocket closes
  }

  track(session, incoming, request) {
    const call = {
      session, incoming, callId: request.call_id,
      peer: session.remote_identity.uri.user,
      name: session.remote_identity.display_name || '',
      state: incoming ? 'ringing' : 'calling',
      muted: false, since: null, ended: null, stats: null,
    };
    const changed = () => this.onChange(call);
    session.on('progress', () => { if (!incoming) { call.state = 'ringing back'; changed(); } });
    session.on('accepted', () => { call.state = 'answered'; call.since = Date.now(); changed(); });
    session.on('confirmed', () => {
      call.state = 'answered';
      call.since = call.since || Date.now();
      this.playRemote(call);
      changed();
    });
    const end = ({ originator, cause }) => {
      call.state = 'ended';
      call.ended = endedInWords(cause, originator);
      call.cause = cause;
      changed();
    };
    session.on('ended', end);
    session.on('failed', end);
    this.calls.push(call);
    this.onCall(call);
  }

  playRemote(call) {
    const pc = call.session.connection;
    if (!pc) return;
    const tracks = pc.getReceivers().map((r) => r.track).filter(Boolean);
    const audio = document.getElementById('remote-audio');
    audio.srcObject = new MediaStream(tracks);
    audio.play().catch(() => {});      // autoplay policy: the click that answered allows it
  }

  dial(number) {
    this.ua.call(`sip:${number}@${this.domain}`, MEDIA);
  }

  answer(call) {
    call.state = 'answering';
    call.session.answer(MEDIA);
    this.onChange(call);
  }

  // Declines a ringing call (603 Decline: the proxy applies the busy rule, section 5), hangs up
  // an answered one, cancels a placed one.
  hangup(call) {
    if (call.ended) return;
    if (call.incoming && call.state === 'ringing') call.session.terminate({ status_code: 603 });
    else call.session.terminate();
  }

  toggleMute(call) {
    if (call.session.isMuted().audio) call.session.unmute({ audio: true });
    else call.session.mute({ audio: true });
    call.muted = call.session.isMuted().audio;
    this.onChange(call);
  }

  // RTP packets each way of an answered call (getStats): what shows audio flows.
  async stats(call) {
    const pc = call.session.connection;
    if (!pc) return null;
    const out = { received: 0, sent: 0, state: pc.connectionState };
    (await pc.getStats()).forEach((r) => {
      if (r.kind !== 'audio') return;
      if (r.type === 'inbound-rtp') out.received += r.packetsReceived;
      if (r.type === 'outbound-rtp') out.sent += r.packetsSent;
    });
    return out;
  }
}
