"""Logs in to an AMQP 0-9-1 broker and reports how far it got, with the standard library only:
    AMQP_PASSWORD=... python3 amqp_login.py HOST PORT USER   ->  prints ok | refused | timeout | closed
(the password in the environment, not on the command line: the boot test watches command lines)
`ok` means the broker accepted the credentials (it sent Connection.Tune after our PLAIN StartOk);
the e2e test runs it inside a host's network namespace (`ip netns exec`)."""

from __future__ import annotations

import os
import socket
import struct
import sys

FRAME_END = b"\xce"


def _shortstr(value: bytes) -> bytes:
    return struct.pack(">B", len(value)) + value


def _read_frame(sock: socket.socket) -> tuple[int, bytes]:
    header = _read_exact(sock, 7)
    kind, _channel, size = struct.unpack(">BHI", header)
    payload = _read_exact(sock, size + 1)
    return kind, payload[:-1]


def _read_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionResetError("closed")
        data += chunk
    return data


def login(host: str, port: int, user: str, password: str, timeout: float = 5.0) -> str:
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            kind, payload = _read_frame(sock)
            if kind != 1 or struct.unpack(">HH", payload[:4]) != (10, 10):  # Connection.Start
                return "closed"
            args = (struct.pack(">I", 0) + _shortstr(b"PLAIN")
                    + struct.pack(">I", len(user) + len(password) + 2) + b"\0" + user.encode() + b"\0" + password.encode()
                    + _shortstr(b"en_US"))
            method = struct.pack(">HH", 10, 11) + args  # Connection.StartOk
            sock.sendall(struct.pack(">BHI", 1, 0, len(method)) + method + FRAME_END)
            try:
                kind, payload = _read_frame(sock)
            except ConnectionResetError:
                return "refused"  # RabbitMQ closes the socket on bad credentials
            return "ok" if kind == 1 and struct.unpack(">HH", payload[:4]) == (10, 30) else "refused"
    except (socket.timeout, TimeoutError):
        return "timeout"
    except (ConnectionRefusedError, ConnectionResetError, OSError):
        return "closed"


if __name__ == "__main__":
    print(login(sys.argv[1], int(sys.argv[2]), sys.argv[3], os.environ["AMQP_PASSWORD"]))
