"""Phone <-> FreeSWITCH through a Kamailio under test (tests/test_proxy.py's routing lab), over UDP:
    python3 route_lab.py PROXY_IP EIP FS_IP FS2_IP PHONE_IP  ->  one JSON line per scenario
Each scenario: the phone INVITEs the proxy (port 5060); the INVITE that reaches a FreeSWITCH
stand-in is reported (its source address and its Record-Routes); the stand-in answers 200, then
sends a BYE along its route set (the first Route, as RFC 3261 12.2.1.1 with loose routing says)
and the phone, later, a BYE along its own (reversed) set, sent to the proxy's private address
as AWS's 1:1 NAT would deliver a packet for the Elastic IP. Reported: where each BYE came from.
Scenario "preferred" asks the tree's DISPATCHER_PREFERRED_ROUTE for the second media server
(X-Preferred: the lab's request_route hands it to that route, as the tree does after a 407)."""

from __future__ import annotations

import json
import re
import socket
import sys
import time
import uuid


def udp(ip: str, port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((ip, port))
    s.settimeout(0.2)
    return s


def headers(msg: str, name: str) -> list[str]:
    return [line.split(":", 1)[1].strip() for line in msg.split("\r\n") if line.lower().startswith(name.lower() + ":")]


def receive(sock: socket.socket, start: bytes, call: str, seconds: float = 3.0):
    """The first message of this call starting with `start`; a BYE is answered 200 (as a UA does),
    so Kamailio stops retransmitting it. Anything of another call is ignored."""
    end = time.time() + seconds
    while time.time() < end:
        try:
            data, source = sock.recvfrom(65535)
        except socket.timeout:
            continue
        msg = data.decode()
        if data.startswith(start) and headers(msg, "Call-ID") == [call]:
            if start == b"BYE":
                sock.sendto(ok(msg).encode(), source)
            return msg, source
    return None, None


def ok(request: str) -> str:
    """200 OK to `request`, sent back where it came from (RFC 3261 18.2.2, with rport)."""
    keep = [line for line in request.split("\r\n")[1:] if line.split(":", 1)[0].lower() in ("via", "from", "to", "call-id", "cseq")]
    return "SIP/2.0 200 OK\r\n" + "\r\n".join(keep) + "\r\nContent-Length: 0\r\n\r\n"


def route_target(route: str, proxy: str, eip: str) -> tuple[str, int]:
    match = re.search(r"sip:([0-9.]+)(?::(\d+))?", route)
    host, port = match.group(1), int(match.group(2) or 5060)
    return (proxy if host == eip else host), port  # the Elastic IP reaches the private address


def scenario(proxy: str, eip: str, media: list[str], phone_ip: str, preferred: str | None) -> dict:
    phone = udp(phone_ip, 5062)
    fs = {ip: udp(ip, 11000) for ip in media}
    call = uuid.uuid4().hex
    extra = f"X-Preferred: {preferred}\r\n" if preferred else ""
    phone.sendto((
        f"INVITE sip:100@example.com SIP/2.0\r\nVia: SIP/2.0/UDP {phone_ip}:5062;branch=z9hG4bK{call[:8]};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:200@example.com>;tag=ph1\r\nTo: <sip:100@example.com>\r\nCall-ID: {call}\r\n"
        f"CSeq: 1 INVITE\r\nContact: <sip:200@{phone_ip}:5062>\r\n{extra}Content-Length: 0\r\n\r\n").encode(), (proxy, 5060))
    report: dict = {"scenario": "preferred" if preferred else "dispatcher"}
    end, invite = time.time() + 3, None
    while invite is None and time.time() < end:
        for ip, sock in fs.items():
            msg, source = receive(sock, b"INVITE", call, 0.2)
            if msg:
                invite = (ip, sock, msg, source)
                break
    if invite is None:
        return {**report, "error": "no INVITE reached a FreeSWITCH stand-in"}
    ip, sock, msg, source = invite
    rr = headers(msg, "Record-Route")
    report.update(media=ip, invite_from=list(source), record_route=rr)
    vias = "".join(f"Via: {v}\r\n" for v in headers(msg, "Via"))
    sock.sendto((f"SIP/2.0 200 OK\r\n{vias}" + "".join(f"Record-Route: {r}\r\n" for r in rr) +
                 f"From: <sip:200@example.com>;tag=ph1\r\nTo: <sip:100@example.com>;tag=fs1\r\nCall-ID: {call}\r\n"
                 f"CSeq: 1 INVITE\r\nContact: <sip:fs@{ip}:11000>\r\nContent-Length: 0\r\n\r\n").encode(), source)
    receive(phone, b"SIP/2.0 200", call, 2)
    # FreeSWITCH hangs up: its route set is the Record-Routes in order
    target = route_target(rr[0], proxy, eip) if rr else (proxy, 5060)
    report["fs_bye_to"] = list(target)
    sock.sendto((f"BYE sip:200@{phone_ip}:5062 SIP/2.0\r\nVia: SIP/2.0/UDP {ip}:11000;branch=z9hG4bKb{call[:8]};rport\r\n"
                 f"Max-Forwards: 70\r\nRoute: {', '.join(rr)}\r\nFrom: <sip:100@example.com>;tag=fs1\r\n"
                 f"To: <sip:200@example.com>;tag=ph1\r\nCall-ID: {call}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n").encode(), target)
    _, source = receive(phone, b"BYE", call, 2)
    report["fs_bye_reached_phone_from"] = list(source) if source else None
    # the phone's in-dialog request: its route set is the Record-Routes reversed
    back = list(reversed(rr))
    target = route_target(back[0], proxy, eip) if back else (proxy, 5060)
    phone.sendto((f"BYE sip:fs@{ip}:11000 SIP/2.0\r\nVia: SIP/2.0/UDP {phone_ip}:5062;branch=z9hG4bKp{call[:8]};rport\r\n"
                  f"Max-Forwards: 70\r\nRoute: {', '.join(back)}\r\nFrom: <sip:200@example.com>;tag=ph1\r\n"
                  f"To: <sip:100@example.com>;tag=fs1\r\nCall-ID: {call}\r\nCSeq: 3 BYE\r\nContent-Length: 0\r\n\r\n").encode(), target)
    _, source = receive(sock, b"BYE", call, 2)
    report["phone_bye_reached_fs_from"] = list(source) if source else None
    phone.close()
    for s in fs.values():
        s.close()
    return report


def main() -> None:
    proxy, eip, fs1, fs2, phone = sys.argv[1:6]
    for preferred in (None, f"sip:{fs2}:11000"):
        print(json.dumps(scenario(proxy, eip, [fs1, fs2], phone, preferred)), flush=True)
        time.sleep(0.3)


if __name__ == "__main__":
    main()
