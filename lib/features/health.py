"""What `GET /api/v1/health` reports (contract section 1): the state store, the media relay
and Kamailio itself, each asked directly, and whether this node sheds load (section 11,
lib/features/overload); the first problem is the reason."""
import logging

import redis

from lib.decisions import media
from lib.features import kamailio_rpc, overload
from lib.store import clients

log = logging.getLogger("ua.health")
KAMAILIO_TIMEOUT = 1.0


def kamailio_alive(ctl):
    """An RPC round trip through Kamailio's ctl socket (`unix:/path`): kamcmd, Kamailio's
    own binrpc client, asks for core.version."""
    try:
        return "kamailio" in kamailio_rpc.call(ctl, "core.version",
                                               timeout=KAMAILIO_TIMEOUT).lower()
    except kamailio_rpc.RpcError:
        return False


def problem(cfg, r):
    """None when every component answers, else why not, in a few words."""
    try:
        r.ping()
    except (clients.StoreUnavailable, redis.RedisError, OSError) as exc:
        log.warning("health: state store unreachable: %s", exc)
        return "state store unreachable"
    if cfg.media == "rtpengine" and not media.alive(cfg.rtpengine_url):
        log.warning("health: media relay unreachable at %s", cfg.rtpengine_url)
        return "media relay unreachable"
    if cfg.kamailio_ctl and not kamailio_alive(cfg.kamailio_ctl):
        log.warning("health: Kamailio does not answer on %s", cfg.kamailio_ctl)
        return "Kamailio unreachable"
    return overload.status()
