"""SIP OPTIONS over TLS, from a namespace, verifying the server against a CA; one connection kept
open across a certificate renewal:
    python3 sip_tls.py HOST PORT CA_FILE SERVER_NAME [WAIT_FILE]
prints "<serial of the certificate> <status line>" for an OPTIONS; with WAIT_FILE, then waits until
that file exists and sends a second OPTIONS on the same connection, printing its status line too."""

from __future__ import annotations

import os
import socket
import ssl
import sys
import time
import uuid


def options(sock: ssl.SSLSocket, host: str, port: int) -> str:
    local = sock.getsockname()
    sock.sendall((
        f"OPTIONS sip:{host}:{port};transport=tls SIP/2.0\r\n"
        f"Via: SIP/2.0/TLS {local[0]}:{local[1]};branch=z9hG4bK{uuid.uuid4().hex}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:e2e@{local[0]}>;tag={uuid.uuid4().hex[:8]}\r\n"
        f"To: <sip:{host}>\r\n"
        f"Call-ID: {uuid.uuid4().hex}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65535)
        if not chunk:
            return "closed"
        data += chunk
    return data.split(b"\r\n", 1)[0].decode()


def main() -> None:
    host, port, ca, name = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    context = ssl.create_default_context(cafile=ca)
    with socket.create_connection((host, port), timeout=10) as raw, context.wrap_socket(raw, server_hostname=name) as tls:
        serial = tls.getpeercert()["serialNumber"]
        print(int(serial, 16), options(tls, host, port), flush=True)
        if len(sys.argv) > 5:
            deadline = time.monotonic() + 120
            while not os.path.exists(sys.argv[5]) and time.monotonic() < deadline:
                time.sleep(0.2)
            print(options(tls, host, port), flush=True)


if __name__ == "__main__":
    main()
