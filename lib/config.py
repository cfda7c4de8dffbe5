"""Configuration from the UA_* environment variables (contract section 1)."""
import os
import socket
from dataclasses import dataclass

MIN_EXPIRES = 60
MAX_EXPIRES = 3600
DEFAULT_EXPIRES = 600


@dataclass(frozen=True)
class Config:
    listen: str
    sip_port: int
    tls_port: int
    http_port: int
    https_port: int
    domain: str
    redis_url: str
    api_token: str
    node_id: str
    media: str
    rtpengine_url: str
    voicemail_number: str
    voicemail_prefix: str
    max_contacts: int
    ws_origins: tuple
    mds_probe_interval: int


def load(env=None) -> Config:
    env = os.environ if env is None else env
    listen = env.get("UA_LISTEN", "127.0.0.1")
    origins = env.get("UA_WS_ORIGINS", "")
    return Config(
        listen=listen,
        sip_port=int(env.get("UA_SIP_PORT", "5060")),
        tls_port=int(env.get("UA_TLS_PORT", "5061")),
        http_port=int(env.get("UA_HTTP_PORT", "8088")),
        https_port=int(env.get("UA_HTTPS_PORT", "8443")),
        domain=env.get("UA_DOMAIN", listen),
        redis_url=env.get("UA_REDIS_URL", ""),
        api_token=env.get("UA_API_TOKEN", ""),
        node_id=env.get("UA_NODE_ID", socket.gethostname()),
        media=env.get("UA_MEDIA", "rtpengine"),
        rtpengine_url=env.get("UA_RTPENGINE_URL", ""),
        voicemail_number=env.get("UA_VOICEMAIL_NUMBER", "*98"),
        voicemail_prefix=env.get("UA_VOICEMAIL_PREFIX", "vm-"),
        max_contacts=int(env.get("UA_MAX_CONTACTS", "5")),
        ws_origins=tuple(o.strip() for o in origins.split(",") if o.strip()),
        mds_probe_interval=int(env.get("UA_MDS_PROBE_INTERVAL", "5")),
    )
