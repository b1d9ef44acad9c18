"""Sends SIP OPTIONS over UDP from this network namespace and counts the 200s:
    python3 sip_flood.py HOST PORT COUNT [SECONDS]  ->  prints "<sent> <answered>"
COUNT requests, each with its own Call-ID and branch (so Kamailio's retransmission check does not
swallow them), spread over SECONDS (0: as fast as possible); replies are read for two more seconds.
The e2e test floods one proxy with it to see kamailio-configs' antiflood role (pike) cut a source off."""

from __future__ import annotations

import socket
import sys
import time
import uuid


def options(host: str, port: int, local: tuple[str, int]) -> bytes:
    tag, call = uuid.uuid4().hex[:10], uuid.uuid4().hex
    return (
        f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {local[0]}:{local[1]};branch=z9hG4bK{uuid.uuid4().hex}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:flood@{local[0]}>;tag={tag}\r\n"
        f"To: <sip:{host}:{port}>\r\n"
        f"Call-ID: {call}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def main() -> None:
    host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((host, port))
    local = sock.getsockname()
    sock.setblocking(False)
    answered = 0

    def drain() -> None:
        nonlocal answered
        while True:
            try:
                data = sock.recv(65535)
            except (BlockingIOError, ConnectionRefusedError):
                return
            if data.startswith(b"SIP/2.0 200"):
                answered += 1

    for n in range(count):
        sock.send(options(host, port, local))
        drain()
        if seconds:
            time.sleep(seconds / count)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        drain()
        time.sleep(0.05)
    print(count, answered)


if __name__ == "__main__":
    main()
