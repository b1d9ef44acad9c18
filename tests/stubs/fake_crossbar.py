#!/usr/bin/python3
"""A stand-in for Kazoo's crossbar API (the two calls cloud-init/remote/master-account.sh makes), for
the remote scripts run on a fake host (tests/fakehost.py). It serves 127.0.0.1:8000 inside the fake
host's network namespace; real curl talks to it. Start it with `FakeHost.run(..., setup=...)`:

    {sys.executable} {STUBS}/fake_crossbar.py start        # returns once it answers

Its accounts and users are the sup stand-in's (tests/stubs/sup: $STUB_STATE/kazoo/state.json, read
and written under the same lock), so the account `sup crossbar_maintenance create_account` made can
log in, and a password set here is the one the state keeps (as md5("user:password")).

Sources: 2600hz/kazoo branch 4.3,
- applications/crossbar/doc/user_authentication.md: PUT /v2/user_auth with
  {"data": {"credentials": md5("user:password"), "account_name": ..., "method": "md5"}} (or
  account_realm / phone_number) -> an auth token and data.account_id, data.owner_id;
  src/modules/cb_user_auth.erl: credentials that belong to no user of that account ->
  cb_context:add_system_error('invalid_credentials') = 401 "invalid credentials" (cb_context.erl);
  a PUT creates: 201.
- applications/crossbar/doc/users.md: PATCH /v2/accounts/{ACCOUNT_ID}/users/{USER_ID} with
  X-Auth-Token and {"data": {...}} merges the fields into the user -> 200 with the user; cb_users.erl
  hashes a `password` field into the user's md5 (and sha1) credentials and never stores it.
  No token, or one crossbar did not issue: 401.
Every request is logged to $STUB_STATE/crossbar/requests.jsonl: method, path, status, never a body,
a hash or a token. Not imitated: every other endpoint, token expiry, sha1 credentials, phone numbers,
the account hierarchy beyond "a token works on its own account".
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

HERE = Path(__file__).resolve().parent
STUB_STATE = Path(os.environ.get("STUB_STATE", "/tmp"))

_loader = importlib.machinery.SourceFileLoader("sup_stub", str(HERE / "sup"))
_spec = importlib.util.spec_from_loader("sup_stub", _loader)
sup = importlib.util.module_from_spec(_spec)
_loader.exec_module(sup)

TOKENS: dict[str, dict] = {}  # auth token -> {account_id, owner_id}: crossbar's token_auth, in memory


def normalize(name: str) -> str:
    """kzd_accounts:normalize_name/1: lowercase, alphanumerics only (how account_name is looked up)."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


def error(status: int, name: str, message: str) -> tuple[int, dict]:
    return status, {"data": {"message": message}, "error": str(status), "message": name,
                    "status": "error", "request_id": uuid.uuid4().hex}


def unauthorized() -> tuple[int, dict]:
    return error(401, "invalid_credentials", "invalid credentials")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Cowboy"

    def log_message(self, fmt, *args):
        pass

    def do_GET(self): self.dispatch()
    def do_PUT(self): self.dispatch()
    def do_POST(self): self.dispatch()
    def do_PATCH(self): self.dispatch()
    def do_DELETE(self): self.dispatch()

    def dispatch(self):
        path = urlparse(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            status, body = self.route(path, raw)
        except Exception as e:  # a crash is a 500, as cowboy answers it
            status, body = error(500, "internal_error", repr(e))
        entry = {"method": self.command, "path": path, "status": status}
        (STUB_STATE / "crossbar").mkdir(parents=True, exist_ok=True)
        with open(STUB_STATE / "crossbar" / "requests.jsonl", "a") as log:
            log.write(json.dumps(entry) + "\n")
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def route(self, path: str, raw: bytes) -> tuple[int, dict]:
        parts = [p for p in path.split("/") if p]
        if parts[:1] != ["v2"]:
            return error(404, "not_found", "not found")
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            return error(400, "invalid_json", "request body is not JSON")
        if self.command == "PUT" and parts == ["v2", "user_auth"]:
            return self.user_auth(body)
        if self.command == "PATCH" and len(parts) == 5 and parts[1] == "accounts" and parts[3] == "users":
            return self.patch_user(parts[2], parts[4], body)
        if len(parts) == 1 or self.headers.get("X-Auth-Token") not in TOKENS:
            return unauthorized()  # api_resource is_authorized/2: no valid token
        return error(404, "not_found", "not found")

    def user_auth(self, body: dict) -> tuple[int, dict]:
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            return error(400, "invalid_data", "data missing")
        credentials = data.get("credentials")
        if not isinstance(credentials, str) or not 1 <= len(credentials) <= 64:  # the schema
            return error(400, "invalid_data", "credentials: required string(1..64)")
        if data.get("method", "md5") != "md5":
            return unauthorized()  # sha1 credentials: not imitated, never matched
        with sup.State() as state:
            for account_id, account in state.data["accounts"].items():
                if data.get("account_name") and normalize(account["name"]) != normalize(data["account_name"]):
                    continue
                if data.get("account_realm") and account["realm"] != data["account_realm"]:
                    continue
                if not data.get("account_name") and not data.get("account_realm"):
                    continue
                for user_id, user in account["users"].items():
                    if user["md5"] == credentials.lower():
                        token = secrets.token_hex(32)
                        TOKENS[token] = {"account_id": account_id, "owner_id": user_id}
                        return 201, {
                            "auth_token": token,
                            "data": {"account_id": account_id, "apps": [], "is_reseller": account.get("superduper_admin", False),
                                     "language": "en-US", "owner_id": user_id, "reseller_id": account_id},
                            "request_id": uuid.uuid4().hex, "revision": "automatic", "status": "success",
                        }
        return unauthorized()

    def patch_user(self, account_id: str, user_id: str, body: dict) -> tuple[int, dict]:
        token = self.headers.get("X-Auth-Token")
        auth = TOKENS.get(token or "")
        if auth is None:
            return unauthorized()
        if auth["account_id"] != account_id:
            return error(403, "forbidden", "You do not have permission to access this resource")
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            return error(400, "invalid_data", "data missing")
        with sup.State() as state:
            user = state.data["accounts"].get(account_id, {}).get("users", {}).get(user_id)
            if user is None:
                return error(404, "bad_identifier", "bad identifier")
            for key, value in data.items():
                if key == "password":  # cb_users: hashed into the credentials, never stored
                    user["md5"] = sup.md5_credentials(data.get("username", user["username"]), value)
                elif not key.startswith("pvt_") and key != "md5":
                    user[key] = value
            shown = {k: v for k, v in user.items() if k != "md5"}
        return 200, {"auth_token": token, "data": {**shown, "id": user_id}, "request_id": uuid.uuid4().hex,
                     "revision": "automatic", "status": "success"}


def serve(args) -> None:
    server = ThreadingHTTPServer((args.listen, args.port), Handler)
    server.daemon_threads = True
    print(f"fake crossbar on {args.listen}:{args.port}", flush=True)
    server.serve_forever()


def start(args) -> None:
    """Serve in the background; return once the port answers."""
    log = STUB_STATE / "crossbar" / f"server-{os.getpid()}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "serve", "--listen", args.listen,
                                 "--port", str(args.port)], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"fake crossbar did not start: {log.read_text()}")
        try:
            with socket.create_connection((args.listen, args.port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    sys.exit("fake crossbar did not answer within 20 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["start", "serve"])
    parser.add_argument("--listen", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    (serve if args.command == "serve" else start)(args)


if __name__ == "__main__":
    main()
