#!/usr/bin/env python3
"""A stand-in for one node of Apache CouchDB 3.5 (its HTTP API), for the remote scripts run on a fake
host (tests/fakehost.py). Real curl talks to it; several nodes run side by side on 127.0.0.x inside
the fake host's network namespace, one process each.

Like CouchDB, a node boots from files, and fails like CouchDB where those files are wrong:
- the Erlang args file (COUCHDB_ARGS_FILE, --args-file): `-name couchdb@<fqdn>`, and `-setcookie`
  or else the cookie file $HOME/.erlang.cookie (--home; default the account's home), as Erlang's
  auth reads it (checked with Debian 12's OTP 25): its first line; a file group or others may read
  stops the VM ("Cookie file ... must be accessible by owner only"); no file: the VM makes one up,
  and the node meets nobody;
- the ini chain of its etc directory: default.ini, default.d/*.ini, local.ini, local.d/*.ini, each
  directory sorted, later files winning; runtime changes are written to the LAST file of the chain.
Files are read and written as the `couchdb` account (a child process with its uid, gid and groups),
so owners and modes matter as they do to the real service (User=couchdb).

Every behaviour names its source: apache/couchdb at tag 3.5.2.post2 (ad30249f), paths relative to
that tree, unless another repository is named. Not imitated: shards, replication, views, revisions
beyond a counter, sessions and cookies, the JavaScript query server, Fauxton. The Erlang distribution
between nodes (net_adm:ping, rpc:multicall, erlang:set_cookie) is imitated over this same HTTP port
under /_fake_dist/, authenticated by the node's cookie: nodes whose cookies differ do not connect.

Usage (as root, inside the fake host):
  fake_couchdb.py start --etc DIR --args-file FILE [--home DIR] [--listen ADDRESS] [--state DIR] [--user NAME]
      boot a node in the background; exits 0 once it answers, or 1 with the reason it did not boot
  fake_couchdb.py serve ...            the same in the foreground
  fake_couchdb.py seed --node couchdb@FQDN [--state DIR] [--dbs N] [--accounts [ID ...]]
      give a node N databases and an `accounts` database (with its design document, as Kazoo's has;
      `--accounts` alone: no account yet)
--state defaults to $STUB_STATE/couchdb; every request is logged there to requests.jsonl (never a
password or a cookie). --listen defaults to the address the -name host resolves to (/etc/hosts).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import hmac
import json
import os
import pwd
import re
import secrets
import shlex
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

DEFAULT_STATE = Path(os.environ.get("STUB_STATE", "/tmp")) / "couchdb"
# setup.erl cluster_system_dbs/0 at 3.5 (no _global_changes any more)
CLUSTER_SYSTEM_DBS = ["_users", "_replicator"]
# couch_httpd_auth.erl ?LOCKOUT_MSG
LOCKOUT_MSG = "Account is temporarily locked due to multiple authentication failures"
# what the request log keeps of a _cluster_setup body: never a password or a cookie
LOGGED_FIELDS = ("action", "host", "port", "remote_node", "node_count")
# test_util:wait/1 as setup.erl wait_connected/0 uses it: 5 s (FAKE_COUCHDB_WAIT shortens it in tests)
CONNECT_WAIT = float(os.environ.get("FAKE_COUCHDB_WAIT", "5"))
# FAKE_COUCHDB_LATE=<node>:<seconds>: that node's distribution answers only that long after the first
# attempt to reach it, as a node still starting (its VM up, its Erlang distribution not yet reachable):
# finish_cluster then meets what setup.erl wait_connected/0 reports when a node does not connect in time.
LATE_NODE, _, LATE_SECONDS = os.environ.get("FAKE_COUCHDB_LATE", "").rpartition(":")
FIRST_CONTACT: list[float] = []


class Refused(Exception):
    """The node does not boot; the message is what CouchDB would say (or crash with)."""


# ----- files, as the couchdb account ---------------------------------------------------------------

# Runs as the couchdb account: reads the args file and the ini chain, or saves one key to one file.
# File errors come back as their errno name, as Erlang's file module reports them ({error, eacces}).
AS_ACCOUNT = r'''
import errno, json, os, re, sys
req = json.load(sys.stdin)
def err(e):
    return {"error": errno.errorcode.get(e.errno, str(e.errno)).lower(), "path": e.filename}
def expand(path):
    # config.erl expand_dirs_fmap: a directory is lists:sort(filelib:wildcard("*.ini", Dir))
    if os.path.isdir(path):
        return [os.path.join(path, n) for n in sorted(os.listdir(path)) if n.endswith(".ini")]
    return [path]
if req["op"] == "boot":
    out = {}
    try:
        with open(req["args_file"], encoding="latin-1") as f:
            out["args"] = f.read()
        cookie = os.path.join(req["home"], ".erlang.cookie")
        if os.path.exists(cookie):
            if os.stat(cookie).st_mode & 0o077:
                out["cookie_error"] = f"Cookie file {cookie} must be accessible by owner only"
            else:
                with open(cookie, encoding="latin-1") as f:
                    out["cookie_file"] = f.read().split("\n", 1)[0]
        etc = req["etc"]
        # config_app.erl default/0: these four, those that exist (filelib:is_file is true for directories)
        chain = [p for p in (os.path.join(etc, "default.ini"), os.path.join(etc, "default.d"),
                             os.path.join(etc, "local.ini"), os.path.join(etc, "local.d")) if os.path.exists(p)]
        files = [f for p in chain for f in expand(p)]
        texts = []
        for name in files:
            with open(name, encoding="utf-8") as f:
                texts.append(f.read())
        out["files"], out["texts"] = files, texts
    except OSError as e:
        out = err(e)
    print(json.dumps(out))
elif req["op"] == "save":
    # config_writer.erl save_to_file/2: {ok, Old} = file:read_file(File) (a crash when unreadable),
    # then the key replaced in its section, or appended to it, or the section appended; file:write_file.
    name, section, key, value = req["file"], req["section"], req["key"], req["value"]
    try:
        with open(name, encoding="utf-8") as f:
            lines = re.split(r"\r\n|\n|\r|\x1a", f.read())
    except OSError as e:
        print(json.dumps({"crash": err(e)})); sys.exit()
    header = "[" + section + "]"
    kv = key + " = " + value
    pattern = re.compile(r"^(" + re.escape(key) + r"\s*=)|\[[a-zA-Z0-9._-]*\]")
    def strip_tail(ls):
        while ls and ls[-1] == "":
            ls.pop()
        return ls
    out, i = [], 0
    while i < len(lines) and lines[i] != header:
        out.append(lines[i]); i += 1
    if i == len(lines):
        new = strip_tail(out) + ["", header, kv]
    else:
        out.append(header); i += 1
        while True:
            if i == len(lines):
                new = strip_tail(out) + [kv]; break
            m = pattern.match(lines[i])
            if m is None:
                out.append(lines[i]); i += 1
            elif m.group(1) is None:  # the next section: append the key before it
                new = strip_tail(out) + [kv, "", lines[i]] + lines[i + 1:]; break
            else:
                new = out + [kv] + lines[i + 1:]; break
    text = "".join(line + "\n" for line in strip_tail(new))
    try:
        with open(name, "w", encoding="utf-8") as f:
            f.write(text)
        print(json.dumps({"ok": True}))
    except OSError as e:
        print(json.dumps(err(e)))
'''


class Account:
    """The service account CouchDB runs as (couchdb.service: User=couchdb, Group=couchdb)."""

    def __init__(self, name: str):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise Refused(f"no {name} account: systemd cannot start User={name}") from None
        self.uid, self.gid, self.home = entry.pw_uid, entry.pw_gid, entry.pw_dir
        self.groups = os.getgrouplist(name, entry.pw_gid)
        self.python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

    def do(self, request: dict) -> dict:
        """Run AS_ACCOUNT with this account's credentials; the request travels on stdin (it may
        hold a password hash: never on a command line)."""
        run = subprocess.run(
            [self.python, "-I", "-c", AS_ACCOUNT], input=json.dumps(request), capture_output=True, text=True,
            user=self.uid, group=self.gid, extra_groups=self.groups, cwd="/", timeout=30,
        )
        if run.returncode != 0:
            raise RuntimeError(run.stderr)
        return json.loads(run.stdout)


def parse_ini(text: str) -> list[tuple[str, str, str]]:
    """config.erl parse_ini/1: comments (`;` first, or after a space or tab), sections, `key = value`
    (else `key=value`), empty values skipped."""
    values, section = [], ""
    for raw in re.split(r"\r\n|\n|\r|\x1a", text):
        line = raw.strip()
        if line.startswith(";"):
            continue
        line = re.split(r" ;|\t;", line)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            name, sep, rest = line[1:].partition("]")
            if sep and name and rest == "":
                section = name
            continue
        if not section:
            continue
        if " = " in line:
            key, value = line.split(" = ", 1)
            if value.strip():
                values.append((section, key.strip(), value.strip()))
            continue
        key, sep, value = line.partition("=")
        if sep and key and value:
            values.append((section, key.strip(), value.strip()))
    return values


def parse_args_file(text: str) -> list[str]:
    """erlexec.c build_args_from_string (allow_comments): whitespace separates, quotes group and are
    stripped, `#` outside quotes starts a comment to the end of the line."""
    words = []
    for line in text.splitlines():
        lexer = shlex.shlex(line, posix=True)
        lexer.whitespace_split, lexer.commenters = True, "#"
        words += list(lexer)
    return words


# ----- passwords -----------------------------------------------------------------------------------

def verify_admin(stored: str, password: str) -> bool:
    """couch_auth_cache.erl get_admin/1 formats (values split on ","), checked as
    couch_httpd_auth.erl authenticate_int does: pbkdf2 with the salt's ASCII bytes, hex key."""
    for prefix, prf in (("-pbkdf2:sha-", "sha1"), ("-pbkdf2-", "sha1"), ("-pbkdf2:sha224-", "sha224"),
                        ("-pbkdf2:sha256-", "sha256"), ("-pbkdf2:sha384-", "sha384"),
                        ("-pbkdf2:sha512-", "sha512")):
        if stored.startswith(prefix):
            parts = [p for p in stored[len(prefix):].split(",") if p]
            if len(parts) != 3:
                return False
            key, salt, iterations = parts
            derived = hashlib.pbkdf2_hmac(prf, password.encode(), salt.encode(), int(iterations)).hex()
            return hmac.compare_digest(derived, key)
    if stored.startswith("-hashed-"):
        key, salt = stored[len("-hashed-"):].split(",")
        return hmac.compare_digest(hashlib.sha1((password + salt).encode()).hexdigest(), key)
    return False  # a plaintext entry is not a login until the hasher has replaced it (get_admin -> nil)


def hash_admin_password(password: str) -> str:
    """couch_passwords.erl hash_admin_password("pbkdf2", _): sha256, 600000 rounds, 32-hex salt."""
    salt = secrets.token_hex(16)
    key = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), 600000).hex()
    return f"-pbkdf2:sha256-{key},{salt},600000"


# ----- the node ------------------------------------------------------------------------------------

class HttpError(Exception):
    def __init__(self, status: int, error: str, reason: str):
        super().__init__(reason)
        self.status, self.error, self.reason = status, error, reason


class Node:
    def __init__(self, etc: str, args_file: str, state: Path, user: str, listen: str | None,
                 home: str | None = None):
        self.etc, self.state_root = etc, state
        self.account = Account(user)
        boot = self.account.do({"op": "boot", "etc": etc, "args_file": args_file, "home": home or self.account.home})
        if "error" in boot:
            # the args file: erlexec cannot start; an ini file: config.erl read_ini_file/1 only
            # handles enoent, anything else is a case_clause crash at startup
            raise Refused(f"{{error,{boot['error']}}} reading {boot['path']} as {user}")
        words = parse_args_file(boot["args"])
        names = [words[i + 1] for i, w in enumerate(words[:-1]) if w == "-name"]
        cookies = [words[i + 1] for i, w in enumerate(words[:-1]) if w == "-setcookie"]
        if len(names) != 1 or "@" not in names[0] or "." not in names[0].split("@", 1)[1]:
            raise Refused(f"{args_file}: one -name couchdb@<fqdn> expected (long names), got {names}")
        self.name = names[0]
        self.host = self.name.split("@", 1)[1]
        # one -setcookie is the cookie (also ''); with none, the cookie file; with two (ignored, OTP 25
        # tested) or no file, the node makes up a cookie of its own: it then meets nobody
        if len(cookies) == 1:
            self.cookie = cookies[0]
        elif not cookies and "cookie_error" in boot:
            raise Refused(boot["cookie_error"])
        elif not cookies and "cookie_file" in boot:
            self.cookie = boot["cookie_file"]
        else:
            self.cookie = "generated-" + secrets.token_hex(10)
        if self.cookie == "monster":  # couch_sup.erl assert_no_monsters/0 (CVE-2022-24706)
            raise Refused("Monster detected ohno!, aborting startup.")
        self.files = boot["files"]
        self.write_file = self.files[-1] if self.files else None  # config.erl get_write_file: lists:last
        self.config: dict[tuple[str, str], str] = {}
        for text in boot["texts"]:  # config.erl ini_map/1: later files win
            for section, key, value in parse_ini(text):
                self.config[(section, key)] = value
        if not self.section("admins"):  # couch_sup.erl assert_admins/0
            raise Refused("No Admin Account Found, aborting startup. Please configure an admin account in your local.ini file.")
        # couch_password_hasher.erl init -> hash_admin_passwords(true): plaintext entries are hashed and
        # written (to the last file); a failed write is ignored and the plaintext stays on disk
        for user_name, value in self.section("admins").items():
            if not value.startswith("-"):
                self.config_set("admins", user_name, hash_admin_password(value))
        self.lock = threading.RLock()
        self.dir = state / self.name
        self.dir.mkdir(parents=True, exist_ok=True)
        if not (self.dir / "state.json").exists():
            # mem3_nodes: a node is in its own _nodes from the start
            self.save({"nodes": [self.name], "dbs": {}})
        self.address = listen or socket.gethostbyname(self.host)
        self.port = int(self.get("chttpd", "port", "5984"))
        self.lockouts: dict[tuple[str, str], int] = {}
        self.verified: set[tuple[str, str, str]] = set()  # couch_passwords_cache

    # config.erl
    def get(self, section: str, key: str, default: str | None = None) -> str | None:
        return self.config.get((section, key), default)

    def section(self, section: str) -> dict[str, str]:
        return {k: v for (s, k), v in sorted(self.config.items()) if s == section}

    def config_set(self, section: str, key: str, value, persist: bool = True) -> str:
        """config.erl handle_call({set, ...}): memory first, then config_writer:save_to_file to the
        last file. Returns "ok", the file error ({error, eacces} -> "eacces"), or "crash" (an
        unreadable file crashes the config server; over rpc that is a badrpc)."""
        if not isinstance(value, str):  # config:set(_, _, undefined) is a function_clause
            return "function_clause"
        self.config[(section, key)] = value
        if not persist or self.write_file is None:
            return "ok"
        done = self.account.do({"op": "save", "file": self.write_file, "section": section, "key": key, "value": value})
        if "crash" in done:
            return "crash"
        return "ok" if done.get("ok") else done["error"]

    # the node's databases, _nodes included
    def load(self) -> dict:
        return json.loads((self.dir / "state.json").read_text())

    def save(self, data: dict) -> None:
        tmp = self.dir / "state.json.tmp"
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        tmp.replace(self.dir / "state.json")

    # setup.erl is_cluster_enabled/0
    def cluster_enabled(self) -> bool:
        return self.get("chttpd", "bind_address") != "127.0.0.1" and bool(self.section("admins"))

    # ---- the Erlang distribution, over HTTP -------------------------------------------------------
    def registry(self) -> Path:
        path = self.state_root / "epmd"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def register(self) -> None:
        (self.registry() / f"{self.name}.json").write_text(
            json.dumps({"address": self.address, "port": self.port, "pid": os.getpid()}))

    def dist(self, node: str, op: str, **payload) -> dict | None:
        """A call to another node, or None when it is not connected (unknown, down, other cookie)."""
        try:
            entry = json.loads((self.registry() / f"{node}.json").read_text())
        except (OSError, ValueError):
            return None
        body = json.dumps({"cookie": self.cookie, "from": self.name, **payload}).encode()
        request = urllib.request.Request(f"http://{entry['address']}:{entry['port']}/_fake_dist/{op}", data=body,
                                         headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return json.loads(answer.read())
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def ping(self, node: str) -> bool:  # net_adm:ping/1
        return node == self.name or self.dist(node, "ping") is not None

    def connected(self) -> list[str]:  # [node() | nodes()] among the known nodes
        return sorted(n for n in self.load()["nodes"] if self.ping(n))

    def all_dbs(self) -> list[str]:
        """Databases are cluster-wide: this node's and those of the members it reaches."""
        names = set(self.load()["dbs"])
        for node in self.load()["nodes"]:
            if node != self.name:
                answer = self.dist(node, "dbs")
                names |= set(answer["dbs"]) if answer else set()
        return sorted(names)

    def handle_dist(self, op: str, body: dict) -> dict:
        if self.name == LATE_NODE:
            FIRST_CONTACT[:] = FIRST_CONTACT or [time.monotonic()]
            if time.monotonic() - FIRST_CONTACT[0] < float(LATE_SECONDS):
                raise HttpError(503, "dist", "not connected yet")
        # distribution handshake: both ends must hold the same cookie
        if body.get("cookie") != self.cookie:
            raise HttpError(403, "dist", "cookie mismatch")
        if op == "ping":
            return {"pong": self.name}
        if op == "dbs":
            return {"dbs": sorted(self.load()["dbs"])}
        if op == "config_set":  # rpc:multicall(_, config, set, [S, K, V])
            return {"result": self.config_set(body["section"], body["key"], body["value"])}
        raise HttpError(404, "not_found", op)

    # ---- _cluster_setup (setup_httpd.erl, setup.erl) ----------------------------------------------
    def setup_state(self, dbs: list[str]) -> str:
        if self.get("couchdb", "single_node", "false") == "true":
            return "single_node_enabled"
        existing = set(self.all_dbs())
        has_dbs = all(db in existing for db in dbs)
        if int(self.get("cluster", "n", "3")) == 1:
            return "single_node_enabled" if self.section("admins") and has_dbs else "single_node_disabled"
        if not self.cluster_enabled():
            return "cluster_disabled"
        return "cluster_finished" if has_dbs else "cluster_enabled"

    def setup_action(self, body: dict) -> tuple[int, dict]:
        action = body.get("action", "missing")
        if action == "enable_cluster":
            if body.get("remote_node"):
                return self.enable_cluster_http(body)
            if self.cluster_enabled():
                return bad_request("Cluster is already enabled")
            credentials = (body.get("username"), body.get("password_hash") or body.get("password"))
            bind = body.get("bind_address")
            current = self.get("chttpd", "bind_address")
            if bind in ("127.0.0.1", "::1") or (bind is None and current in ("127.0.0.1", "::1")):
                raise HttpError(500, "error", "Cluster setup requires a remote bind_address (not 127.0.0.1 nor ::1)")
            if body.get("node_count") is None:
                raise HttpError(500, "error", "Cluster setup requires node_count to be configured")
            # setup_node/4: every config:set result is ignored, so a failed write still answers 201
            if credentials[0] is not None and credentials[1] is not None:
                self.config_set("admins", credentials[0], credentials[1])
            self.config_set("chttpd", "bind_address", bind or "0.0.0.0")
            count = body["node_count"]
            # min(NodeCount, 3) in Erlang term order: any binary is greater than any number
            self.config_set("cluster", "n", str(3 if isinstance(count, str) else min(int(count), 3)))
            if body.get("port") is not None:
                self.config_set("chttpd", "port", str(body["port"]))
            return 201, {"ok": True}
        if action == "add_node":
            return self.add_node(body)
        if action == "receive_cookie":  # erlang:set_cookie(node(), Cookie): memory only
            self.cookie = str(body.get("cookie", ""))
            return 201, {"ok": True}
        if action == "finish_cluster":
            return self.finish_cluster(body)
        return bad_request("Invalid Action'")

    def enable_cluster_http(self, body: dict) -> tuple[int, dict]:
        # enable_cluster_http/1: the coordinator's hash of `username`; ?l2b(undefined) is a badarg
        stored = self.get("admins", str(body.get("username")))
        if stored is None:
            raise HttpError(500, "unknown_error", "badarg")
        remote = {"action": "enable_cluster", "username": body.get("username"), "password_hash": stored,
                  "bind_address": body.get("bind_address"), "port": body.get("port"), "node_count": body.get("node_count")}
        auth = (body["remote_current_user"], body.get("remote_current_password", "")) if body.get("remote_current_user") else None
        http_post(f"http://{body['remote_node']}:{body.get('port') or 5984}/_cluster_setup", remote, auth)
        return 201, {"ok": True}  # setup_httpd: anything but {error, cluster_enabled} is ok

    def add_node(self, body: dict) -> tuple[int, dict]:
        if not self.cluster_enabled():
            return bad_request("Cluster is not enabled.")
        host, port = str(body.get("host")), body.get("port", 5984)
        name = body.get("name") or {"15984": "node1", "25984": "node2", "35984": "node3"}.get(str(port), "couchdb")
        try:
            status = http_post(f"http://{host}:{port}/_cluster_setup", {"action": "receive_cookie", "cookie": self.cookie},
                               (str(body.get("username")), str(body.get("password"))))
        except ConnectionRefusedError:
            return bad_request("Add node failed. Invalid Host and/or Port.")
        except OSError as e:  # {error, Message} from ibrowse, passed on as the reason
            return bad_request(str(e))
        if status != 201:
            # add_node_int/2 returns the reply itself; setup_httpd maps it to ok: 201, node not added
            return 201, {"ok": True}
        with self.lock:  # create_node_doc/2 into _nodes: an existing doc is a conflict (409)
            data = self.load()
            doc_id = f"{name}@{host}"
            if doc_id in data["nodes"]:
                raise HttpError(409, "conflict", "Document update conflict.")
            data["nodes"].append(doc_id)
            self.save(data)
        return 201, {"ok": True}

    def finish_cluster(self, body: dict) -> tuple[int, dict]:
        if self.get("couchdb", "uuid") is None:  # couch_server:get_uuid(): made and persisted if unset
            self.config_set("couchdb", "uuid", secrets.token_hex(16))
        others = [n for n in self.load()["nodes"] if n != self.name]
        deadline = time.monotonic() + CONNECT_WAIT  # wait_connected/0
        while not all(self.ping(n) for n in others):
            if time.monotonic() > deadline:
                raise HttpError(500, "setup_error", "Cluster setup timed out waiting for nodes to connect")
            time.sleep(0.05)
        # sync_admins/0, sync_uuid/0, sync_auth_secret/0: rpc:multicall(other_nodes(), config, set, ...)
        syncs = [("admins", k, v) for k, v in self.section("admins").items()]
        syncs += [("couchdb", "uuid", self.get("couchdb", "uuid")), ("chttpd_auth", "secret", self.get("chttpd_auth", "secret"))]
        for section, key, value in syncs:
            results = [self.dist(n, "config_set", section=section, key=key, value=value) for n in others]
            if not all(r is not None and r.get("result") == "ok" for r in results):
                print(f"setup sync_admin results {results}", file=sys.stderr, flush=True)
                raise HttpError(500, "setup_error", "Cluster setup unable to sync admin passwords")
        dbs = body.get("ensure_dbs_exist") or CLUSTER_SYSTEM_DBS
        existing = set(self.all_dbs())
        if all(db in existing for db in dbs):  # finish_cluster_int(_, true)
            return bad_request("Cluster is already finished")
        with self.lock:
            data = self.load()
            for db in dbs:
                data["dbs"].setdefault(db, {})
            self.save(data)
        return 201, {"ok": True}


def bad_request(reason: str) -> tuple[int, dict]:
    # couch_httpd:send_error(Req, 400, <<"bad_request">>, Message)
    return 400, {"error": "bad_request", "reason": reason}


def http_post(url: str, body: dict, auth: tuple[str, str] | None) -> int:
    """ibrowse:send_req as setup.erl uses it: the HTTP status, or the connection error."""
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as e:
        return e.code
    except urllib.error.URLError as e:
        raise e.reason if isinstance(e.reason, OSError) else OSError(str(e.reason)) from None


# ----- HTTP ----------------------------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    node: Node
    protocol_version = "HTTP/1.1"
    server_version = "CouchDB/3.5.2 (Erlang OTP/26)"

    def log_message(self, fmt, *args):  # the request log below replaces the default stderr line
        pass

    def do_GET(self): self.dispatch()
    def do_POST(self): self.dispatch()
    def do_PUT(self): self.dispatch()
    def do_DELETE(self): self.dispatch()
    def do_HEAD(self): self.dispatch()

    def dispatch(self):
        self.entry = {"node": self.node.name, "method": self.command, "path": urlparse(self.path).path}
        length = int(self.headers.get("Content-Length") or 0)
        self.raw = self.rfile.read(length) if length else b""
        if self.command == "POST" and self.entry["path"] == "/_cluster_setup":  # for the log only
            try:
                posted = json.loads(self.raw)
                self.entry.update({k: posted[k] for k in LOGGED_FIELDS if k in posted})
            except (ValueError, TypeError):
                pass
        try:
            status, body = self.route()
        except HttpError as e:
            status, body = e.status, {"error": e.error, "reason": e.reason}
        self.entry["status"] = status
        if not self.entry["path"].startswith("/_fake_dist/"):
            with open(self.node.state_root / "requests.jsonl", "a") as log:
                log.write(json.dumps(self.entry) + "\n")
        data = (json.dumps(body, separators=(",", ":")) + "\n").encode()  # jiffy: compact JSON
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "must-revalidate")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def json_body(self):
        try:
            return json.loads(self.raw or b"null")
        except ValueError:
            raise HttpError(400, "bad_request", "invalid UTF-8 JSON") from None

    # chttpd.erl: authentication first (couch_httpd_auth default_authentication_handler), then
    # authorization by path (chttpd_auth_request.erl)
    def authenticate(self) -> str | None:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None  # no credentials: anonymous (admins exist, so no admin party)
        try:
            user, sep, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise HttpError(400, "bad_request", "Authorization header has invalid base64 value") from None
        if not sep or (user, password) == ("_", "_"):
            return None
        self.entry["user"] = user
        stored = self.node.get("admins", user)
        if stored is None:  # get_user_creds -> nil (no _users database user either)
            raise HttpError(401, "unauthorized", "Name or password is incorrect.")
        # couch_httpd_auth authenticate/5 and couch_auth_lockout.erl: keyed by peer, user (and salt);
        # checked before the password, so a locked-out client is refused even with the right one
        key = (self.client_address[0], user)
        mode = self.node.get("chttpd_auth_lockout", "mode", "enforce")
        threshold = int(self.node.get("chttpd_auth_lockout", "threshold", "5"))
        if mode == "enforce" and self.node.lockouts.get(key, 0) >= threshold:
            raise HttpError(403, "forbidden", LOCKOUT_MSG)
        if (user, password, stored) in self.node.verified or verify_admin(stored, password):
            self.node.verified.add((user, password, stored))
            return user
        if mode in ("enforce", "warn"):
            self.node.lockouts[key] = self.node.lockouts.get(key, 0) + 1
        raise HttpError(401, "unauthorized", "Name or password is incorrect.")

    def route(self) -> tuple[int, object]:
        node, method = self.node, self.command
        parts = [unquote(p) for p in self.entry["path"].split("/") if p]
        if parts[:1] == ["_fake_dist"]:
            return 200, node.handle_dist(parts[1], self.json_body())
        admin = self.authenticate() is not None  # every account here is a server admin

        def require_admin():
            if not admin:
                raise HttpError(401, "unauthorized", "You are not a server admin.")

        if not parts:
            return 200, {"couchdb": "Welcome", "version": "3.5.2", "vendor": {"name": "The Apache Software Foundation"}}
        head = parts[0]
        if head == "_up":  # no authorization needed (server_authorization_check)
            return 200, {"status": "ok", "seeds": {}}
        if head == "_cluster_setup":
            require_admin()  # setup_httpd: chttpd:verify_is_server_admin first
            if method == "GET":
                return 200, {"state": node.setup_state(CLUSTER_SYSTEM_DBS)}
            if method != "POST":
                raise HttpError(405, "method_not_allowed", "Only GET,POST allowed")
            ctype = self.headers.get("Content-Type", "")
            if ctype.split(";")[0].strip() != "application/json":  # couch_httpd:validate_ctype/2
                raise HttpError(415, "bad_content_type", "Content-Type must be application/json")
            body = self.json_body()
            if not isinstance(body, dict):
                raise HttpError(400, "bad_request", "Missing JSON body'")
            with node.lock:
                return node.setup_action(body)
        if head == "_membership":  # mem3_httpd.erl
            require_admin()
            return 200, {"all_nodes": node.connected(), "cluster_nodes": sorted(node.load()["nodes"])}
        if head == "_all_dbs":  # [chttpd] admin_only_all_dbs = true by default
            require_admin()
            return 200, node.all_dbs()
        if head == "_node" and len(parts) >= 3 and parts[2] == "_config":  # chttpd_node.erl
            require_admin()
            if parts[1] not in ("_local", node.name):
                raise HttpError(404, "not_found", "no such node")
            if len(parts) == 5 and method == "GET":
                value = node.get(parts[3], parts[4])
                if value is None:
                    raise HttpError(404, "not_found", "unknown_config_value")
                return 200, value
            if len(parts) == 5 and method == "PUT":
                old = node.get(parts[3], parts[4], "")
                result = node.config_set(parts[3], parts[4], str(self.json_body()))
                if result != "ok":  # {error, Reason} -> chttpd:send_error(Req, {bad_request, Reason})
                    raise HttpError(400, "bad_request", result)
                return 200, old
            if len(parts) == 4 and method == "GET":
                return 200, node.section(parts[3])
            raise HttpError(405, "method_not_allowed", "Only GET,PUT allowed")
        if head.startswith("_"):
            require_admin()
            raise HttpError(400, "illegal_database_name", f"Name: '{head}'. Only lowercase characters (a-z), digits (0-9), and any of the characters _, $, (, ), +, -, and / are allowed. Must begin with a letter.")
        return self.database(parts, admin)

    def database(self, parts: list[str], admin: bool) -> tuple[int, object]:
        # new databases are admin-only ([couchdb] default_security = admin_only), and every login here
        # is an admin; a database lives on the node it was created on and is listed cluster-wide
        node, method, db = self.node, self.command, parts[0]
        if not admin:
            raise HttpError(401, "unauthorized", "You are not authorized to access this db.")
        with node.lock:
            data = node.load()
            if len(parts) == 1 and method == "PUT":
                if db in node.all_dbs():
                    raise HttpError(412, "file_exists", "The database could not be created, the file already exists.")
                data["dbs"][db] = {}
                node.save(data)
                return 201, {"ok": True}
            docs = data["dbs"].get(db)
            if docs is None:
                raise HttpError(404, "not_found", "Database does not exist.")  # chttpd error_info
            if len(parts) == 1:
                return 200, {"db_name": db, "doc_count": len(docs), "doc_del_count": 0, "cluster": {"n": int(node.get("cluster", "n", "3")), "q": int(node.get("cluster", "q", "2"))}}
            if parts[1] == "_all_docs":
                ids = sorted(docs)  # raw collation of doc ids
                rows = [{"id": i, "key": i, "value": {"rev": docs[i]["_rev"]}} for i in ids]
                return 200, {"total_rows": len(rows), "offset": 0, "rows": rows}
            doc_id = "/".join(parts[1:3]) if parts[1] == "_design" else parts[1]
            if method == "GET":
                if doc_id not in docs:
                    raise HttpError(404, "not_found", "missing")
                return 200, docs[doc_id]
            if method == "PUT":
                doc = self.json_body()
                if not isinstance(doc, dict):
                    raise HttpError(400, "bad_request", "Document must be a JSON object")
                current = docs.get(doc_id)
                if current is not None and doc.get("_rev") != current["_rev"]:
                    raise HttpError(409, "conflict", "Document update conflict.")
                generation = int(current["_rev"].split("-")[0]) + 1 if current else 1
                doc.update({"_id": doc_id, "_rev": f"{generation}-{secrets.token_hex(16)}"})
                docs[doc_id] = doc
                node.save(data)
                return 201, {"ok": True, "id": doc_id, "rev": doc["_rev"]}
        raise HttpError(405, "method_not_allowed", "Only GET,PUT allowed")


# ----- commands ------------------------------------------------------------------------------------

def serve(args) -> None:
    try:
        node = Node(args.etc, args.args_file, Path(args.state), args.user, args.listen, args.home)
    except Refused as e:
        print(f"fake CouchDB did not start: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    handler = type("NodeHandler", (Handler,), {"node": node})
    server = ThreadingHTTPServer((node.address, node.port), handler)
    server.daemon_threads = True
    node.register()
    print(f"{node.name} on {node.address}:{node.port}, last ini file {node.write_file}", flush=True)
    server.serve_forever()


def start(args) -> None:
    """Boot a node in the background; return once it answers (or failed to boot)."""
    state = Path(args.state)
    state.mkdir(parents=True, exist_ok=True)
    log_path = state / f"server-{os.getpid()}.log"
    with open(log_path, "w") as log:
        command = [sys.executable, os.path.abspath(__file__), "serve", "--etc", args.etc, "--args-file", args.args_file,
                   "--state", args.state, "--user", args.user] + (["--listen", args.listen] if args.listen else []) \
            + (["--home", args.home] if args.home else [])
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.stderr.write(log_path.read_text())
            sys.exit(1)
        for entry in (state / "epmd").glob("*.json") if (state / "epmd").is_dir() else []:
            try:
                if json.loads(entry.read_text())["pid"] == proc.pid:
                    print(log_path.read_text().strip())
                    return
            except (OSError, ValueError):
                pass
        time.sleep(0.05)
    sys.exit(f"fake CouchDB did not answer within 30 s: {log_path}")


def seed_node(state: Path, node: str, dbs: int = 0, accounts: tuple[str, ...] | None = None) -> None:
    """Give a node `dbs` databases (db_000, ...) and, unless accounts is None, an `accounts` database
    holding those account ids beside `_design/accounts` (Kazoo's accounts database carries its views
    as a design document: an id that is not an account). Run before or after `start`."""
    path = state / node / "state.json"
    data = json.loads(path.read_text()) if path.exists() else {"nodes": [node], "dbs": {}}
    for n in range(dbs):
        data["dbs"].setdefault(f"db_{n:03d}", {})
    if accounts is not None:
        docs = data["dbs"].setdefault("accounts", {})
        docs["_design/accounts"] = {"_id": "_design/accounts", "_rev": "1-0", "language": "javascript", "views": {}}
        for account in accounts:
            docs[account] = {"_id": account, "_rev": "1-0", "pvt_type": "account"}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, sort_keys=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("start", "serve"):
        sub = commands.add_parser(name)
        sub.add_argument("--etc", required=True, help="the node's etc directory (default.ini, local.d/, ...)")
        sub.add_argument("--args-file", required=True, help="its Erlang args file (-name, -setcookie)")
        sub.add_argument("--home", help="where its .erlang.cookie is ($HOME; default: the account's home)")
        sub.add_argument("--listen", help="address to serve on (default: what the -name host resolves to)")
        sub.add_argument("--state", default=str(DEFAULT_STATE))
        sub.add_argument("--user", default="couchdb")
    seed = commands.add_parser("seed")
    seed.add_argument("--node", required=True)
    seed.add_argument("--state", default=str(DEFAULT_STATE))
    seed.add_argument("--dbs", type=int, default=0)
    seed.add_argument("--accounts", nargs="*", help="create the accounts database, with these account ids")
    args = parser.parse_args()
    if args.command == "seed":
        seed_node(Path(args.state), args.node, args.dbs, None if args.accounts is None else tuple(args.accounts))
    else:
        (serve if args.command == "serve" else start)(args)


if __name__ == "__main__":
    main()
