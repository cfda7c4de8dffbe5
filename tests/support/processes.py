"""Stopping a process this code started, by its PID: SIGTERM, then SIGKILL after a grace
period (a process that ignores the polite signal must not outlive the test)."""
import signal
import subprocess


def stop_process(proc, grace=10):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
