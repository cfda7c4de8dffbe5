"""Several proxies on one Redis (scale-out). Every binding names the proxy holding its
connection (`node`) and the address other proxies reach that proxy on (`node_addr`,
UA_NODE_ADDR). A WebSocket, TCP or TLS connection can only be written to by the proxy
that accepted it, so a branch for a connection held by another proxy goes through that
proxy: the Request-URI keeps the device's contact and carries which connection in a
`ua_relay` parameter, the holder checks the sender is a proxy of the cluster, takes the
parameter off and delivers. A UDP device is reached directly from whichever proxy routes
the call.

    ua:nodes   hash  <node> -> <host:port> (its UA_NODE_ADDR), written at start-up
"""
import base64
import time

import msgpack

from lib.decisions import sipmsg
from lib.store import clients, keyspace
from lib.users import validation

RELAY_PARAM = "ua_relay"
# The proxy that routed the call runs the ring time; the holder must never cut it short.
RELAY_FR_INV_MS = (validation.MAX_RING_SECONDS + 10) * 1000


def announce(node, addr):
    clients.call(lambda r: r.hset(keyspace.NODES_KEY, node, addr))


# The cluster's addresses as this process last read them: a proxy found there is trusted
# again for this long without a round trip (every relayed call asks); an address not found
# is always looked up, so a proxy that has just started is trusted at once.
PEER_CACHE_SECONDS = 10.0
_peers = frozenset()
_peers_until = 0.0


def is_peer(ip):
    """Whether a request from `ip` comes from a proxy of the cluster (trusted like an MDS)."""
    global _peers, _peers_until
    now = time.monotonic()
    if ip in _peers and now < _peers_until:
        return True
    addrs = clients.call(lambda r: r.hvals(keyspace.NODES_KEY))
    _peers = frozenset(a.decode().rpartition(":")[0].strip("[]") for a in addrs)
    _peers_until = now + PEER_CACHE_SECONDS
    return ip in _peers


def branch(contact, node, udp_socket, tcp_socket):
    """(Request-URI, next hop, send socket) of the branch ringing `contact` from `node`."""
    if contact["node"] == node:
        return contact["uri"], contact["source"], contact["socket"]
    if contact["conid"] is None or not contact.get("node_addr"):
        # UDP: any proxy reaches the device (behind a NAT, only if it lets another
        # address in). No node_addr: bound before relaying existed, tried directly.
        return contact["uri"], contact["source"], udp_socket
    token = base64.urlsafe_b64encode(msgpack.packb(
        [contact["source"], contact["socket"], contact["conid"], contact["peer"]])).decode()
    uri, sep, headers = contact["uri"].partition("?")
    return (f"{uri};{RELAY_PARAM}={token.rstrip('=')}{sep}{headers}",
            f"sip:{contact['node_addr']};transport=tcp", tcp_socket)


def replies_need_alias(contacts, node):
    """Whether the replies of branches to these contacts need an alias in their Contact for
    the in-dialog requests to find the device: reached over a connection, through another
    proxy, or behind a NAT (registered from another address than its Contact names). A
    device reached where its Contact says needs nothing, and its replies no Python."""
    return any(c["conid"] is not None or c["node"] != node
               or sipmsg.uri_host_port(c["uri"]) != sipmsg.uri_host_port(c["source"])
               for c in contacts)


def is_relayed(ruri):
    return f";{RELAY_PARAM}=" in ruri


def unwrap(ruri):
    """(the device's Request-URI, its binding as far as delivery needs) of a request
    relayed by another proxy; ValueError when the parameter is not one of ours."""
    marker = f";{RELAY_PARAM}="
    start = ruri.index(marker)
    end = min([i for i in (ruri.find(";", start + 1), ruri.find("?", start)) if i >= 0],
              default=len(ruri))
    token = ruri[start + len(marker):end]
    try:
        source, socket, conid, peer = msgpack.unpackb(
            base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"bad {RELAY_PARAM} parameter") from exc
    return (ruri[:start] + ruri[end:],
            {"source": source, "socket": socket, "conid": conid, "peer": peer})
