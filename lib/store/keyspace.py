"""Every Redis key name of the proxy, and the key patterns its Lua scripts build: the one
place that says what is stored where.

Key layout. Every key of one user carries the hash tag {N}, so a user's keys share one
Redis Cluster slot:
  ua:user:{N}        hash  profile -> msgpack user record (no secret)
                           ha1     -> digest HA1 (md5 of number:domain:password)
                           device  -> "webrtc" | "deskphone" (absent: never set)
                           forwards -> msgpack forwarding rules (absent: all disabled)
  ua:contacts:{N}    hash  <class>|<instance or contact uri> -> msgpack contact
  ua:calls:{N}       hash  Call-ID -> msgpack call in progress (lib/features/callstate)
  ua:history:{N}     list  msgpack [call id, call entry (msgpack), end time, forwarded to],
                           newest first; formatted as the API shows it when read
  ua:watchers:{N}    hash  BLF subscription Call-ID -> msgpack (lib/features/blf), with
  ua:presence:{N}, ua:watch:expiry: last notified state, expiry index
  ua:blf:late        list of watched users a change outside Kamailio may have moved (lib/features/blf)
  ua:did:<did>       string -> N
  ua:users           set of every provisioned number
  ua:mds             hash  <name> -> msgpack {"uri", "addresses"}
  ua:mds:addr        hash  <ip> -> <name>
  ua:mds:health:<node>  hash  <name> -> msgpack {"uri", "up", "since"}: proxy <node>'s
                     probing result (lib/features/mds_health)
  ua:conn:<node>:<peer>  set of "<N>|<contact field>" bound to the connection from the
                     device's <peer> (ip:port) held by proxy <node>
  ua:conns:<node>    set of the peers of <node>'s connections holding registrations
  ua:nodes           hash  <node> -> its UA_NODE_ADDR (lib/features/nodes)
  ua:reg:<class>     zset "N|<12 hex digits of the binding field's SHA-1>" scored by expiry:
                     live registrations per class (lib/metrics' gauge)
  ua:active:<class>  zset "N|Call-ID" scored by expiry: calls in progress per device
  ua:apiauth:...     failed API authentications per address and account (lib/web/authlimit)
  ua:dials:{N}       hash  click-to-dial id -> msgpack {destination, state, since, node,
                           control_call_id, control_cseq, call_id} (lib/features/control)
  ua:mwi:{N}         string  the last message-summary body an MDS sent for N
                     (lib/features/mwi: sent again to a device that registers anew)
  ua:ctlact:<Call-ID>  string  answer|decline, asked of a ringing call by the UC Assistant,
                     for the failure route of the branch cancelled for it (30 s)
  ua:apinodes        hash  <node> -> the base URL of its API server, written at start-up
  ua:replicated      a channel nobody reads: what UA_REDIS_WAIT's WAIT counts (lib/store/wire)

The Lua scripts build a few of these names from a number they read; LUA_KEYS holds those
patterns and lua() puts them into a script's text.
"""
import string


def user_key(number):
    return f"ua:user:{{{number}}}"


def contacts_key(number):
    return f"ua:contacts:{{{number}}}"


def calls_key(number):
    return f"ua:calls:{{{number}}}"


def history_key(number):
    return f"ua:history:{{{number}}}"


def watchers_key(number):
    return f"ua:watchers:{{{number}}}"


# Bumped by every provisioning change (users, DIDs, MDS: lib/users/provisioning), so that a batch
# of users watches this one key instead of every key it read: Redis checks each WATCH
# against the connection's every watched key, and watching a 100,000-user import's 200,000
# keys never ended.
PROVISIONING_VERSION_KEY = "ua:provisioning:version"


def did_key(did):
    return f"ua:did:{did}"


USERS_KEY = "ua:users"
MDS_KEY = "ua:mds"
MDS_ADDR_KEY = "ua:mds:addr"


def conn_key(node, peer):
    return f"ua:conn:{node}:{peer}"


def conns_key(node):
    return f"ua:conns:{node}"


# Failed API authentications (lib/web/authlimit): per source address in the current minute, the
# address's block, and per account the failures and addresses of the current minute.
def api_failures_key(address):
    return f"ua:apiauth:fail:{address}"


def api_block_key(address):
    return f"ua:apiauth:block:{address}"


def api_account_key(number):
    return f"ua:apiauth:account:{number}"


def api_account_warned_key(number):
    return f"ua:apiauth:warned:{number}"


# --- deskphone control (contract section 12) and the message-waiting resend (section 5)

def dials_key(number):
    return f"ua:dials:{{{number}}}"


def mwi_key(number):
    return f"ua:mwi:{{{number}}}"


def action_key(call_id):
    return f"ua:ctlact:{call_id}"


# Where each proxy's API server answers: an action on a call whose transaction or dialog
# another proxy holds is passed to that proxy's API server.
API_NODES_KEY = "ua:apinodes"


def presence_key(number):
    """The aggregated state last notified to N's watchers (lib/features/blf)."""
    return f"ua:presence:{{{number}}}"


# "N|Call-ID" of every BLF subscription scored by its expiry time, for the expiry timer.
WATCH_EXPIRY_KEY = "ua:watch:expiry"
# Watched users whose presence a change made outside Kamailio may have moved (the API's
# device selection): the BLF timer tells their watchers (lib/features/blf.late).
BLF_LATE_KEY = "ua:blf:late"
NODES_KEY = "ua:nodes"
REPLICATED_CHANNEL = "ua:replicated"


def mds_health_key(node):
    return f"ua:mds:health:{node}"


REGISTRATIONS_PREFIX = "ua:reg:"
ACTIVE_CALLS_PREFIX = "ua:active:"


def registrations_key(klass):
    return f"{REGISTRATIONS_PREFIX}{klass}"


def active_calls_key(device):
    return f"{ACTIVE_CALLS_PREFIX}{device}"


LUA_KEYS = {
    "user_key": "'ua:user:{' .. number .. '}'",
    "contacts_key": "'ua:contacts:{' .. number .. '}'",
    "registrations_prefix": "'ua:reg:'",
}


def lua(text):
    """A Lua script's text with its $user_key, $contacts_key... (LUA_KEYS) filled in: the
    key names stay here, the scripts read as Lua."""
    return string.Template(text).substitute(LUA_KEYS)
