"""The API server process (`python -m lib.web.server`, started and watched by lib.tools.runner):
the application of lib/web/app.py on uvicorn, over HTTP on UA_API_PORT and HTTPS on
UA_API_HTTPS_PORT with the proxy's certificate (UA_TLS_CERT, UA_TLS_KEY), both in one
process and one event loop; SIGTERM or SIGINT stops both."""
import asyncio
import contextlib
import logging
import signal
import sys

import uvicorn
import uvloop

from lib import config
from lib.features import control
from lib.store import clients
from lib.web.app import create_app

log = logging.getLogger("ua.api")
REDIS_READ_TIMEOUT = 2.0    # seconds (lib/store/clients.serve_http)


class Server(uvicorn.Server):
    # Two servers share the process: main() handles the signals for both.
    @contextlib.contextmanager
    def capture_signals(self):
        yield


def listen_host(listen):
    return "::" if listen == "::" else listen


async def serve(cfg):
    app = create_app(cfg)
    try:
        clients.call(lambda r: control.announce(cfg, r))
    except clients.StoreUnavailable as exc:
        # Only actions relayed from other proxies need it; the next start writes it.
        log.warning("this API server's address not announced to the cluster: %s", exc)
    common = {"host": listen_host(cfg.listen), "log_level": "warning", "access_log": False,
              "lifespan": "off", "server_header": False, "timeout_graceful_shutdown": 5}
    servers = [Server(uvicorn.Config(app, port=cfg.api_port, **common))]
    if cfg.tls_cert and cfg.tls_key:
        servers.append(Server(uvicorn.Config(app, port=cfg.api_https_port,
                                             ssl_certfile=cfg.tls_cert, ssl_keyfile=cfg.tls_key,
                                             **common)))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: [setattr(s, "should_exit", True) for s in servers])
    await asyncio.gather(*(s.serve() for s in servers))
    return 0 if all(s.started for s in servers) else 1


def main():
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="ua-api: %(levelname)s %(name)s: %(message)s")
    # Handlers run in threads that hold the GIL in turns with the event loop (a 100,000-
    # user export, for one): handed over every 0.5 ms instead of 5 ms.
    sys.setswitchinterval(0.0005)
    clients.serve_http(REDIS_READ_TIMEOUT)
    return uvloop.run(serve(config.load()))


if __name__ == "__main__":
    sys.exit(main())
