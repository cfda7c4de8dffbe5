"""A client of the API's Server-Sent Events stream (contract section 12), as a UC
Assistant reads it: a thread reads the stream and keeps each event, parsed."""
import base64
import http.client
import json
import socket
import threading
import time
from urllib.parse import urlsplit


class EventStream:
    def __init__(self, api_url, number, password):
        url = urlsplit(api_url)
        self.conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        token = base64.b64encode(f"{number}:{password}".encode()).decode()
        self.conn.request("GET", f"/api/v1/users/{number}/events",
                          headers={"Authorization": f"Basic {token}"})
        self.sock = self.conn.sock
        self.response = self.conn.getresponse()
        self.status = self.response.status
        self.content_type = self.response.getheader("Content-Type", "")
        self.events, self.comments = [], []
        self._cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True, name="sse")
        if self.status == 200:
            self.reader.start()

    def _read(self):
        event, data = None, []
        try:
            for raw in self.response:
                line = raw.decode().rstrip("\r\n")
                if line.startswith(":"):
                    self.comments.append(line)
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
                elif not line and event:
                    with self._cond:
                        self.events.append((event, json.loads("\n".join(data)), time.time()))
                        self._cond.notify_all()
                    event, data = None, []
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            pass        # closed by the test (http.client drops its file: AttributeError)

    def of(self, kind):
        with self._cond:
            return [data for event, data, _ in self.events if event == kind]

    def wait(self, kind, check=lambda data: True, timeout=5, after=0):
        """The first `kind` event from the after-th event on for which check(data) holds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for index, (event, data, _) in enumerate(self.events[after:], after):
                    if event == kind and check(data):
                        return index, data
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no such {kind} event within {timeout} s: "
                                       f"{[(e, d) for e, d, _ in self.events]}")
                self._cond.wait(left)

    def close(self):
        """Ends the stream at once: the reader's file keeps the socket open past close()."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()
        if self.reader.is_alive():
            self.reader.join(5)
