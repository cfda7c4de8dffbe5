"""Kamailio's RPC interface, through kamcmd (Kamailio's own binrpc client) on the ctl
module's socket: the one way the API server, health and /metrics talk to Kamailio."""
import shutil
import subprocess

KAMCMD = shutil.which("kamcmd") or "/usr/sbin/kamcmd"


class RpcError(Exception):
    """Kamailio did not answer in time, or refused the command."""


def call(ctl, *args, timeout):
    """kamcmd's printed answer to one RPC; `ctl` is the socket's path, `unix:` or not."""
    address = ctl if ctl.startswith("unix:") else f"unix:{ctl}"
    try:
        done = subprocess.run([KAMCMD, "-s", address, *args], capture_output=True, text=True,
                              timeout=timeout)
    except (OSError, subprocess.SubprocessError) as exc:
        raise RpcError(f"Kamailio does not answer: {exc}") from exc
    # kamcmd exits 0 when the command itself failed: its answer then reads "error: ..."
    if done.returncode != 0 or done.stdout.startswith("error:"):
        raise RpcError(f"Kamailio refused {args[0]}: "
                       f"{(done.stderr or done.stdout).strip()}")
    return done.stdout


def structures(printed):
    """The structures kamcmd prints (`{`, `key: value`, `key: {`, `}` lines), as dicts."""
    found, stack = [], []
    for line in printed.splitlines():
        text = line.strip()
        key, sep, value = text.partition(":")
        if text == "{" or (value.strip() == "{" and stack):
            block = {}
            if stack:
                stack[-1][key.strip()] = block
            else:
                found.append(block)
            stack.append(block)
        elif text == "}" and stack:
            stack.pop()
        elif stack and sep:
            stack[-1][key.strip()] = value.strip()
    return found
