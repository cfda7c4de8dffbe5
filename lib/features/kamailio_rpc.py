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
    if done.returncode != 0:
        raise RpcError(f"Kamailio refused {args[0]}: {done.stderr.strip()}")
    return done.stdout
