// The proxy's HTTP API as the page uses it: the user's own Basic credentials on every
// request (contract section 9), errors turned into sentences a person can act on, and the
// live event stream (section 12) read with fetch, since EventSource cannot send an
// Authorization header.

export class ApiError extends Error {
  constructor(status, message, retryAfter) {
    super(message);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

// What a failed request means to the person using the page.
function explain(status, body, retryAfter) {
  switch (status) {
    case 401: return 'Wrong number or password.';
    case 403: return body && body.error === 'use HTTPS'
      ? 'The proxy accepts passwords over HTTPS only: open this page with https://.'
      : `Not allowed: ${(body && body.error) || 'forbidden'}.`;
    case 404: return (body && body.error) ? `Not found: ${body.error}.` : 'Not found.';
    case 429: return `Too many failed logins from this address: try again in ${retryAfter || 'a few'} seconds.`;
    case 503: return 'The proxy is unavailable for a moment (its state store): try again.';
    default: return (body && body.error) ? `The proxy refused: ${body.error}.`
      : `The proxy answered HTTP ${status}.`;
  }
}

export class Api {
  constructor(number, password) {
    this.number = number;
    this.auth = `Basic ${btoa(`${number}:${password}`)}`;
    this.base = `/api/v1/users/${encodeURIComponent(number)}`;
  }

  async request(method, path, body) {
    const headers = { Authorization: this.auth };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let response;
    try {
      // credentials 'omit': a 401 must not open the browser's own login prompt
      response = await fetch(path, { method, headers, credentials: 'omit', cache: 'no-store',
                                     body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (err) {
      throw new ApiError(0, 'The proxy is unreachable: check the network and that it runs.');
    }
    const text = await response.text();
    let parsed = null;
    try { parsed = text ? JSON.parse(text) : null; } catch (err) { parsed = null; }
    if (!response.ok) {
      const retryAfter = response.headers.get('Retry-After');
      throw new ApiError(response.status, explain(response.status, parsed, retryAfter), retryAfter);
    }
    return parsed;
  }

  device() { return this.request('GET', `${this.base}/device`); }
  selectDevice(device) { return this.request('PUT', `${this.base}/device`, { device }); }
  history(limit) { return this.request('GET', `${this.base}/history?limit=${limit}`); }
  calls() { return this.request('GET', `${this.base}/calls`); }
  dial(destination) { return this.request('POST', `${this.base}/calls`, { destination }); }
  hangup(id) { return this.request('DELETE', `${this.base}/calls/${encodeURIComponent(id)}`); }
  answer(id) { return this.request('POST', `${this.base}/calls/${encodeURIComponent(id)}/answer`); }
  presence(number) {
    return this.request('GET', `/api/v1/users/${encodeURIComponent(number)}/presence`);
  }

  // Reads the user's Server-Sent Events until `signal` aborts, calling onEvent(name, data)
  // for each; resolves when the stream ends, rejects with an ApiError when it cannot open.
  async events(onEvent, signal) {
    let response;
    try {
      response = await fetch(`${this.base}/events`, {
        headers: { Authorization: this.auth, Accept: 'text/event-stream' },
        credentials: 'omit', cache: 'no-store', signal });
    } catch (err) {
      if (signal.aborted) return;
      throw new ApiError(0, 'The live view lost the proxy: reconnecting.');
    }
    if (!response.ok) {
      const retryAfter = response.headers.get('Retry-After');
      throw new ApiError(response.status, explain(response.status, null, retryAfter), retryAfter);
    }
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buffer += value.replace(/\r\n?/g, '\n');
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let name = 'message';
          const data = [];
          for (const line of block.split('\n')) {
            if (line.startsWith('event:')) name = line.slice(6).trim();
            else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
          }
          if (data.length) onEvent(name, JSON.parse(data.join('\n')));
        }
      }
    } catch (err) {
      if (!signal.aborted) throw new ApiError(0, 'The live view lost the proxy: reconnecting.');
    }
  }
}
