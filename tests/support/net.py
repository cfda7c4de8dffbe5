"""Free ports on loopback addresses for the processes a test starts."""
import socket


def free_port(ip="127.0.0.1"):
    """A port free for both UDP and TCP on ip (SIP listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((ip, 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((ip, port))
                except OSError:
                    continue
            return port
    raise RuntimeError(f"no free port on {ip}")
