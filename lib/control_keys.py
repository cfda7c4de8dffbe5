"""Redis key names of the deskphone control (contract section 12). Kept apart until the
store's keys module absorbs them (issue 19's layout: lib/store/control_keys.py).

  ua:dials:{N}    hash  click-to-dial id -> msgpack {destination, state, since,
                        control_call_id, call_id}
  ua:mwi:{N}      string  the last message-summary body an MDS sent for N
"""


def dials_key(number):
    return f"ua:dials:{{{number}}}"


def mwi_key(number):
    """The last message-summary body an MDS sent for the user (section 5's resend)."""
    return f"ua:mwi:{{{number}}}"
