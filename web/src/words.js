// What the proxy's answers mean, in words for the person using the page (pure functions,
// tested on their own by tests/proxy/test_uc_assistant.py).

const DEVICE = { webrtc: 'UC Assistant', deskphone: 'deskphone' };
const WHERE = { webrtc: 'this browser (UC Assistant)', deskphone: 'your deskphone' };

// Contract section 3's device view: where a call rings now, and why.
export function deviceInWords({ selected, effective, reason }) {
  if (!effective) return 'Calls ring nowhere: neither your deskphone nor the UC Assistant is registered.';
  const where = `Calls ring ${WHERE[effective]}`;
  switch (reason) {
    case 'selected': return `${where}: you selected it.`;
    case 'logged_out': return `${where}: you are logged out of the UC Assistant.`;
    case 'selected_unavailable':
      return `${where}: the ${DEVICE[selected]} you selected is not registered.`;
    default: return `${where} (${reason}).`;
  }
}

export function registeredInWords({ webrtc, deskphone }) {
  const yes = (flag) => (flag ? 'registered' : 'not registered');
  return `UC Assistant ${yes(webrtc)}, deskphone ${yes(deskphone)}.`;
}

// Contract section 7's states.
export function presenceInWords(state) {
  return { available: 'Available', ringing: 'Ringing', in_use: 'In use',
           unavailable: 'Unavailable' }[state] || state;
}

export function deviceName(device) {
  return device ? { webrtc: 'UC Assistant', deskphone: 'Deskphone' }[device] || device : '—';
}

export function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

// Contract section 8's entry: how the call went.
export function outcomeInWords({ direction, answered, duration_s: seconds, forwarded_to: forwarded }) {
  if (forwarded) return `Forwarded to ${forwarded === 'voicemail' ? 'voicemail' : forwarded}`;
  if (answered) return `Answered, ${duration(seconds)}`;
  return direction === 'in' ? 'Missed' : 'Not answered';
}

// Contract section 12's call in progress, as its row in the calls list says it.
export function callInWords({ direction, peer, device, state }) {
  const who = peer || 'an unknown number';
  const what = direction === 'in' ? `From ${who}` : `To ${who}`;
  const how = { dialing: 'dialing', ringing: 'ringing', answered: 'answered' }[state] || state;
  return `${what}: ${how}${device ? ` on the ${DEVICE[device]}` : ''}`;
}

// Contract section 5's message-summary counts.
export function voicemailInWords({ new: fresh, old }) {
  const n = (count, what) => `${count} ${what} message${count === 1 ? '' : 's'}`;
  return `${n(fresh, 'new')}, ${n(old, 'old')}.`;
}
