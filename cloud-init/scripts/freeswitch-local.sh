#!/bin/bash
# Applies this host's values (CONF_DIR/local.env, no secret) to kazoo-configs-freeswitch 4.3 in
# CONF_DIR (the argument). Exit 0: nothing changed; 10: a file changed; else failure, nothing written.
#  kazoo.conf.xml  listen-ip = private IP; upstream's `cookie` becomes `cookie-file` = COOKIE_FILE
#                  (no cookie in any XML or argv); nodename stays freeswitch
#  sip_profiles    sip-ip = ext-sip-ip = private IP; rtp-ip = public IP if on an interface (Hetzner)
#                  else private (AWS 1:1 NAT); ext-rtp-ip = public IP; local-network-acl = none, so
#                  Kamailio counts as NAT and the SDP carries ext-rtp-ip
#  freeswitch.xml  codecs= keeps only codecs this package offers (no VP8, H26x, G7221, G722, G729, GSM)
# Sources: notes/facts-freeswitch.md §2.4, §3.2-3.4, §4.4-4.5 (fs v1.10.9 kazoo_ei_config.c, sofia.c,
# switch_core_media.c). The XML is parsed by expat, so attribute order, quotes, whitespace and
# comments cannot fool it; only the changed attributes are rewritten (double-quoted, in place: the
# X-PRE-PROCESS reader is text-based), other bytes stay upstream's. The result must parse and be a
# fixed point of the edit before it atomically replaces a file (mode and owner kept).
set -euo pipefail
root=${1:?usage: freeswitch-local.sh CONF_DIR}
[ -f "$root/local.env" ] || { echo "freeswitch-local.sh: $root/local.env is missing" >&2; exit 1; }
PRIVATE_IP='' PUBLIC_IP='' PUBLIC_IP_ON_INTERFACE='' COOKIE_FILE=''
# shellcheck source=/dev/null
. "$root/local.env"
rc=0
python3 - "$root" "$PRIVATE_IP" "$PUBLIC_IP" "$PUBLIC_IP_ON_INTERFACE" "$COOKIE_FILE" <<'PY' || rc=$?
import ipaddress, os, re, sys, tempfile
import xml.etree.ElementTree as ET
import xml.parsers.expat
from pathlib import Path

root, private, public, on_if, cookie_file = sys.argv[1:6]


def fail(message):
    sys.exit(f"freeswitch-local.sh: {message}")


for key, value in (("PRIVATE_IP", private), ("PUBLIC_IP", public)):
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        fail(f"{key} in local.env is not an IPv4 address: {value!r}")
if on_if not in ("yes", "no") or not re.fullmatch(r"/[\w./-]+", cookie_file):
    fail("PUBLIC_IP_ON_INTERFACE (yes|no) or COOKIE_FILE (a path) in local.env is wrong")
# by the names FreeSWITCH matches: core PCMU PCMA SPEEX L16, mod_opus, mod_amr, mod_g723_1
OFFERED = {"OPUS", "PCMU", "PCMA", "SPEEX", "L16", "AMR", "G723"}
PROFILE = {"sip-ip": private, "ext-sip-ip": private, "rtp-ip": public if on_if == "yes" else private,
           "ext-rtp-ip": public, "local-network-acl": "none"}
ATTR = re.compile(r"""(\s+)([^\s=/>]+)(\s*=\s*)("[^"]*"|'[^']*')""")


def quoted(value):
    return '"' + value.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;") + '"'


class Doc:
    """An XML file; elements located by expat (byte offsets); edits as byte ranges."""

    def __init__(self, path, data):
        self.path, self.data, self.edits, self.els = path, data, [], []
        parser, stack = xml.parsers.expat.ParserCreate(), []

        def start(name, attrs):
            at = parser.CurrentByteIndex
            el = dict(name=name, attrs=attrs, up=stack[-1] if stack else None, begin=at, tag=self.close(at))
            stack.append(el)
            self.els.append(el)

        def end(_):
            el = stack.pop()
            empty = self.data[el["begin"]:el["tag"]].endswith(b"/>")
            el["end"] = el["tag"] if empty else self.close(parser.CurrentByteIndex)

        parser.StartElementHandler, parser.EndElementHandler = start, end
        try:
            parser.Parse(data, True)
        except xml.parsers.expat.ExpatError as error:
            fail(f"{path}: {error}")

    def close(self, i):  # just past the '>' ending the tag at i, quotes respected
        quote = None
        for j in range(i, len(self.data)):
            c = self.data[j:j + 1]
            if quote:
                quote = None if c == quote else quote
            elif c in b"\"'":
                quote = c
            elif c == b">":
                return j + 1
        fail(f"{self.path}: unterminated tag")

    def kids(self, up, name="param"):
        return [e for e in self.els if e["up"] is up and e["name"] == name]

    def indent(self, el):
        prefix = self.data[self.data.rfind(b"\n", 0, el["begin"]) + 1:el["begin"]]
        return b"" if prefix.strip() else prefix

    def set(self, el, values):
        tag = new = self.data[el["begin"]:el["tag"]].decode()
        for key, value in values.items():
            if el["attrs"].get(key) == value:
                continue
            attrs = list(ATTR.finditer(new))
            m = next((m for m in attrs if m.group(2) == key), None)
            if m:
                new = new[:m.start(4)] + quoted(value) + new[m.end(4):]
            else:
                at = attrs[-1].end() if attrs else re.match(r"<[^\s/>]+", new).end()
                new = new[:at] + f" {key}={quoted(value)}" + new[at:]
        if new != tag:
            self.edits.append((el["begin"], el["tag"], new.encode()))

    def params(self, settings, wanted, fold):
        """Each wanted param gets its value (every occurrence); missing ones are appended."""
        seen = set()
        for p in self.kids(settings):
            key = p["attrs"].get("name", "")
            key = key.lower() if fold else key
            if key in wanted:
                self.set(p, {"value": wanted[key]})
                seen.add(key)
        kids, lines = self.kids(settings), [f"<param name={quoted(k)} value={quoted(v)}/>".encode()
                                             for k, v in wanted.items() if k not in seen]
        if not lines:
            return
        indent = self.indent(kids[-1]) if kids else self.indent(settings) + b"    "
        text = b"".join(b"\n" + indent + line for line in lines)
        tag = self.data[settings["begin"]:settings["tag"]]
        if kids:
            self.edits.append((kids[-1]["end"], kids[-1]["end"], text))
        elif tag.endswith(b"/>"):  # <settings/> opens up
            close = b"\n" + self.indent(settings) + b"</" + settings["name"].encode() + b">"
            self.edits.append((settings["begin"], settings["tag"], tag[:-2].rstrip() + b">" + text + close))
        else:
            self.edits.append((settings["tag"], settings["tag"], text))

    def result(self):
        data, last = self.data, len(self.data) + 1
        for b, e, text in sorted(self.edits, reverse=True):
            if e > last:
                fail(f"{self.path}: overlapping edits")
            data, last = data[:b] + text + data[e:], b
        return data


def kazoo(doc):  # mod_kazoo compares param names with strcmp
    found = [e for e in doc.els if e["name"] == "settings" and e["up"] and e["up"]["name"] == "configuration"
             and e["up"]["attrs"].get("name") == "kazoo.conf"]
    if len(found) != 1:
        fail(f"{doc.path}: expected one kazoo.conf <settings>, found {len(found)}")
    wanted = {"listen-ip": private, "cookie-file": cookie_file}
    for p in doc.kids(found[0]):
        if p["attrs"].get("name") in ("cookie", "cookie-file"):  # upstream's cookie line: cookie-file
            doc.set(p, {"name": "cookie-file", "value": wanted.pop("cookie-file", cookie_file)})
    doc.params(found[0], wanted, fold=False)
    return 1


def profile(doc):  # sofia compares param names with strcasecmp
    found = [e for e in doc.els if e["name"] == "settings" and e["up"] and e["up"]["name"] == "profile"]
    for settings in found:
        doc.params(settings, PROFILE, fold=True)
    return len(found)


def codecs(doc):
    for el in doc.els:
        a = el["attrs"]
        name, sep, value = a.get("data", "").partition("=")
        if el["name"].lower() == "x-pre-process" and a.get("cmd", "").lower() == "set" and sep and name.strip() == "codecs":
            kept = [c.strip() for c in value.split(",") if c.strip().split("@")[0].upper() in OFFERED]
            if not kept:
                fail(f"{doc.path}: this FreeSWITCH offers none of the codecs {value}")
            doc.set(el, {"data": f"{name}={','.join(kept)}"})
    return 1


tree, jobs, changed = Path(root), [], 0
for path, edit in [(tree / "autoload_configs/kazoo.conf.xml", kazoo), (tree / "freeswitch.xml", codecs)] + [
        (p, profile) for p in sorted(tree.glob("sip_profiles/*.xml"))]:
    if not path.is_file():
        fail(f"{path} is missing")
    doc = Doc(path, path.read_bytes())
    count = edit(doc)
    data = doc.result()
    again = Doc(path, data)
    edit(again)
    if again.result() != data:
        fail(f"{path}: the edit is not stable")
    try:
        ET.fromstring(data)
    except ET.ParseError as error:
        fail(f"{path}: the edit breaks the XML: {error}")
    jobs.append((path, doc.data, data, count if edit is profile else 0))
if not sum(j[3] for j in jobs):
    fail(f"no <profile><settings> in {tree}/sip_profiles")
for path, old, data, _ in jobs:
    if data == old:
        continue
    st = path.stat()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, st.st_mode & 0o7777)
        if os.geteuid() == 0:
            os.chown(tmp, st.st_uid, st.st_gid)
        os.replace(tmp, path)
    except BaseException:
        os.path.exists(tmp) and os.unlink(tmp)
        raise
    print(f"freeswitch-local.sh: updated {path}", file=sys.stderr)
    changed = 10
sys.exit(changed)
PY
exit "$rc"
