"""Deskphone control from the UC Assistant (contract section 12): the calls in progress
with their ids, click-to-dial and hang-up. The API server's resources (lib/web/calls.py)
call Control; the Kamailio glue (kemi/control.py) keeps a click-to-dial's record with the
functions below. Decisions are lib/decisions/control.py's.

Click-to-dial rides on the dialog module's bridge (dlg.bridge_dlg, asked over Kamailio's
RPC socket): it calls the user's deskphone through this proxy's own request route, which
adds the auto-answer hints, and REFERs the deskphone to the destination once answered.
The deskphone's own INVITE is then an ordinary call; its Refer-To carries the
click-to-dial's id, so that call keeps the id. Every call with a local user is a dialog
of the proxy (kemi/calltracking.py), which is how an answered one is hung up."""
import http.client
import ssl
import time
import urllib.parse

from lib.features import kamailio_rpc, registrar
from lib.store import codec, keyspace
from lib.decisions import control

RPC_TIMEOUT = 2.0


class ControlError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class Elsewhere(Exception):
    """The call's transaction or dialog is held by the API server at `url` (another proxy
    of the cluster): the action is that proxy's to do."""
    def __init__(self, url):
        super().__init__(url)
        self.url = url


def api_url(cfg):
    """This proxy's API server as its peers reach it (the host of UA_NODE_ADDR), over
    HTTPS: a relayed action carries the user's credentials (and plain HTTP from another
    host is refused where TLS is required, the default off loopback)."""
    host = cfg.node_addr.rpartition(":")[0] or cfg.listen
    return f"https://{host}:{cfg.api_https_port}"


def peer_tls(cfg):
    """The TLS context a relay to a peer uses: its certificate must be this proxy's own
    (a cluster's proxies serve one SIP domain with one certificate); peers are addressed
    by IP, so the certificate itself, not a host name, is what is checked."""
    context = ssl.create_default_context(cafile=cfg.tls_cert)
    context.check_hostname = False
    return context


def announce(cfg, r):
    r.hset(keyspace.API_NODES_KEY, cfg.node_id, api_url(cfg))


def rpc(ctl, *args):
    """One RPC to this proxy's Kamailio (kamcmd on the ctl socket): its printed answer."""
    try:
        return kamailio_rpc.call(ctl, *args, timeout=RPC_TIMEOUT)
    except kamailio_rpc.RpcError as exc:
        raise ControlError(503, str(exc)) from exc


# --- a click-to-dial's record: shared by the API server and the Kamailio glue -----------

def load_dial(r, number, dial_id):
    raw = r.hget(keyspace.dials_key(number), dial_id)
    return codec.unpack(raw) if raw else None


def save_dial(r, number, dial_id, dial):
    key = keyspace.dials_key(number)
    r.pipeline().hset(key, dial_id, codec.pack(dial)) \
        .expire(key, control.DIAL_TTL_SECONDS).execute()


def update_dial(r, number, dial_id, **fields):
    """Changes a click-to-dial's record; False when there is none (expired, forged id).
    Read and written in one transaction: the deskphone's INVITE (its Call-ID) and the
    REFER's answer (the state) change the same record at the same moment, in two
    processes, and a plain read-then-write lost one of them."""
    key = keyspace.dials_key(number)

    def change(pipe):
        raw = pipe.hget(key, dial_id)
        if raw is None:
            return False
        pipe.multi()
        pipe.hset(key, dial_id, codec.pack({**codec.unpack(raw), **fields}))
        pipe.expire(key, control.DIAL_TTL_SECONDS)
        return True

    return r.transaction(change, key, value_from_callable=True)


ACTION_TTL_SECONDS = 30


def ask(r, call_id, action):
    """Tell the failure route why the call's ringing branch is being cancelled."""
    r.set(keyspace.action_key(call_id), action, ex=ACTION_TTL_SECONDS)


def take_action(r, call_id):
    """What was asked of a call whose branch was cancelled (and forget it): None if
    nothing, the branch was cancelled for another reason."""
    return codec.text(r.getdel(keyspace.action_key(call_id)))


def dials_of(r, number):
    return {k.decode(): codec.unpack(v)
            for k, v in r.hgetall(keyspace.dials_key(number)).items()}


# --- the API server's service ------------------------------------------------------------

class Control:
    def __init__(self, cfg, r, clock=time.time):
        self.cfg, self.r, self.clock = cfg, r, clock

    def calls(self, number):
        now = self.clock()
        live = {k.decode(): c for k, c in
                ((k, codec.unpack(v)) for k, v in self.r.hgetall(keyspace.calls_key(number)).items())
                if c["expires_at"] > now}
        return control.calls_in_progress(live, dials_of(self.r, number))

    def dial(self, number, line_type, selected, destination):
        """Click-to-dial: the user's deskphone rings with the auto-answer hints; the id."""
        if not control.valid_destination(destination, self.cfg.voicemail_number):
            raise ControlError(400, "destination must be 1 to 20 digits or the voicemail "
                                    f"number {self.cfg.voicemail_number}")
        view = registrar.device_view(self.r, number, line_type, selected, self.clock())
        if view["effective"] != "deskphone":
            raise ControlError(409, f"the effective device is {view['effective']}, "
                                    "not the deskphone")
        dial_id = control.new_dial_id()
        save_dial(self.r, number, dial_id, {"destination": destination, "state": control.DIALING,
                                            "since": self.clock(), "node": self.cfg.node_id})
        to_phone, refer_to = control.bridge_addresses(number, destination, dial_id,
                                                      self.cfg.domain)
        try:
            # The bridge's INVITE goes out through this proxy's own SIP port (the outbound
            # proxy), whose request route finds the deskphone, wherever it is registered.
            rpc(self.cfg.kamailio_ctl, "dlg.bridge_dlg", to_phone, refer_to,
                f"sip:{self.cfg.listen}:{self.cfg.sip_port}")
        except ControlError:
            update_dial(self.r, number, dial_id, state=control.REFUSED)
            raise
        return dial_id

    def find(self, number, call_ref):
        """(Call-ID, call entry) of a call of this user by its id; the entry is None for a
        click-to-dial whose deskphone still rings (the Call-ID is the control leg's).
        404 when there is no such call in progress."""
        parsed = control.parse_id(call_ref)
        kind, call_id = parsed or (None, None)
        if kind == "dial":
            dial = load_dial(self.r, number, call_id)
            if dial is not None and not dial.get("call_id") and dial["state"] == control.DIALING:
                return dial.get("control_call_id"), None
            call_id = dial.get("call_id") if dial else None
        raw = self.r.hget(keyspace.calls_key(number), call_id) if call_id else None
        if raw is None:
            raise ControlError(404, f"no call {call_ref}")
        return call_id, codec.unpack(raw)

    def here(self, held):
        """Raise Elsewhere unless this proxy holds the call (held: its entry or record)."""
        node = held.get("node")
        if node and node != self.cfg.node_id:
            url = self.r.hget(keyspace.API_NODES_KEY, node)
            if url is None:
                raise ControlError(409, f"the call is held by proxy {node}, which is gone")
            raise Elsewhere(url.decode())

    def hangup(self, number, call_ref):
        """Hang up (section 12): BYE to both sides of an answered call, decline a ringing
        incoming call as a busy device would, cancel a call placed that still rings."""
        call_id, call = self.find(number, call_ref)
        if call is None:      # a click-to-dial whose deskphone still rings
            dial = load_dial(self.r, number, call_ref)
            self.here(dial)
            self.cancel(call_id, dial.get("control_cseq"))
            update_dial(self.r, number, call_ref, state=control.ENDED)
            return
        self.here(call)
        action = control.hangup_action(call)
        if action == "bye":
            self.end_dialog(call_id)
            return
        if action == "decline":
            ask(self.r, call_id, "decline")
        self.cancel(call_id, call.get("cseq"))

    def end_dialog(self, call_id):
        """BYE to both sides of an answered call: asked of Kamailio, whose dialog module
        keeps what the BYEs need (kemi/control.py's hang_up)."""
        found = kamailio_rpc.structures(rpc(self.cfg.kamailio_ctl, "dlg.list_match",
                                            "callid", "eq", call_id))
        if not found:
            raise ControlError(409, "the call is not a dialog of this proxy (it began "
                                    "before the proxy's last start)")
        dialog = control.dialog_to_end(found)
        if dialog is None:
            raise ControlError(409, "the call is already ending")
        # t_uac_wait_block: the ctl socket's transport knows no delayed answer (t_uac_wait)
        answer = kamailio_rpc.structures(rpc(
            self.cfg.kamailio_ctl, "tm.t_uac_wait_block", "NOTIFY",
            f"sip:{control.CONTROL_USER}@{self.cfg.listen}:{self.cfg.sip_port}", ".", ".",
            control.hangup_request(dialog, self.cfg.domain), "s:"))
        if not answer or answer[0].get("code") != "200":
            raise ControlError(409, f"the call could not be hung up ({answer})")

    def answer(self, number, call_ref):
        """A call ringing on the deskphone answered there: its branch cancelled, the same
        call offered again with the auto-answer hints (the failure route does)."""
        call_id, call = self.find(number, call_ref)
        if not control.answer_action(call):
            raise ControlError(409, "the call is not ringing on the deskphone")
        self.here(call)
        ask(self.r, call_id, "answer")
        self.cancel(call_id, call.get("cseq"))
        return control.call_view(call_id, call,
                                 call_ref if control.parse_id(call_ref)[0] == "dial" else None)

    def cancel(self, call_id, cseq):
        """CANCEL the ringing branches of this proxy's INVITE transaction."""
        if cseq is None:
            raise ControlError(409, "the call is not ringing yet")
        try:
            rpc(self.cfg.kamailio_ctl, "tm.cancel", call_id, f"s:{cseq}")
        except ControlError as exc:
            self.r.delete(keyspace.action_key(call_id))
            raise ControlError(409, f"the call no longer rings here ({exc})") from exc


RELAYED_HEADER = "X-UA-Relayed"


def relay(url, cfg, method, path, authorization, body=None):
    """(status, body) of the same request made to another proxy's API server, from this
    proxy's own address, over HTTPS (peer_tls)."""
    peer = urllib.parse.urlsplit(url)
    connection = http.client.HTTPSConnection(
        peer.hostname, peer.port, timeout=RPC_TIMEOUT * 2, context=peer_tls(cfg),
        source_address=(cfg.listen, 0))
    headers = {"Authorization": authorization or "", RELAYED_HEADER: "1",
               **({"Content-Type": "application/json"} if body else {})}
    try:
        connection.request(method, path, body=body, headers=headers)
        answer = connection.getresponse()
        return answer.status, answer.read()
    except (OSError, http.client.HTTPException) as exc:
        raise ControlError(503, f"the proxy holding the call does not answer: {exc}") from exc
    finally:
        connection.close()
