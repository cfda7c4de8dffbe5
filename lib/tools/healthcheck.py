"""The container's health check (docker/Dockerfile HEALTHCHECK, docker/compose.yaml): exit 0
when the API server's `/api/v1/health` answers 200 (Kamailio, Redis and rtpengine answer)
on the address and port the proxy's own settings give, 1 otherwise.
`python -m lib.tools.healthcheck`."""
import sys
import urllib.request

from lib import config

# A wildcard listener is reached on the loopback address of its family.
LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1"}


def url(cfg):
    host = LOOPBACK.get(cfg.listen, cfg.listen)
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{cfg.api_port}/api/v1/health"


def main():
    try:
        with urllib.request.urlopen(url(config.load()), timeout=4) as resp:
            return 0 if resp.status == 200 else 1
    except OSError as exc:
        print(f"health: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
