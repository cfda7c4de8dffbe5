"""Redis key names of the deskphone control (contract section 12). Kept apart until the
store's keys module absorbs them (issue 19's layout: lib/store/control_keys.py).

  ua:dials:{N}    hash  click-to-dial id -> msgpack {destination, state, since,
                        control_call_id, call_id}
"""


def dials_key(number):
    return f"ua:dials:{{{number}}}"
