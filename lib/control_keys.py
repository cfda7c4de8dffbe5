"""Redis key names of the deskphone control (contract section 12). Kept apart until the
store's keys module absorbs them (issue 19's layout: lib/store/control_keys.py).

  ua:dials:{N}    hash  click-to-dial id -> msgpack {destination, state, since,
                        control_call_id, call_id}
  ua:mwi:{N}      string  the last message-summary body an MDS sent for N
  ua:ctlact:<Call-ID>  string  answer|decline, asked of a ringing call (30 s)
  ua:apinodes     hash  <node> -> the base URL of its API server, written at start-up
"""


def dials_key(number):
    return f"ua:dials:{{{number}}}"


def mwi_key(number):
    """The last message-summary body an MDS sent for the user (section 5's resend)."""
    return f"ua:mwi:{{{number}}}"


def action_key(call_id):
    """What the UC Assistant asked of a ringing call (`answer`, `decline`), for the failure
    route of the branch cancelled for it."""
    return f"ua:ctlact:{call_id}"


# Where each proxy's API server answers: an action on a call whose transaction or dialog
# another proxy holds is passed to that proxy's API server.
API_NODES_KEY = "ua:apinodes"
