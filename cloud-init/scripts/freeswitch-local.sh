#!/bin/bash
# Applies this host's values to upstream's kazoo-configs-freeswitch tree (argument: its root), from
# $root/local.env (rendered; no secret in it):
# - autoload_configs/kazoo.conf.xml: mod_kazoo reads the Erlang cookie from `cookie-file` (the
#   0600 file configure.sh installs; FreeSWITCH 1.10.9 src/mod/event_handlers/mod_kazoo/
#   kazoo_ei_config.c) instead of the `cookie` param, and listens on the private IP (`listen-ip`)
#   for ecallmgr; nodename stays `freeswitch`;
# - every sip profile: SIP on the private IP (Kamailio reaches it there); RTP advertised on the
#   public IP, bound to it where it is on the interface (Hetzner) or to the private one behind 1:1
#   NAT (AWS); local-network-acl none, or calls arriving from Kamailio's private address would get
#   the private address in their SDP;
# - freeswitch.xml's codecs list: only codecs the package builds (no G.722, GSM, iLBC, ...).
# Parsed and written with Python's ElementTree (comments kept): attribute order, quotes and layout
# cannot fool it. Exit 0: nothing changed; 10: a file changed (configure.sh then restarts
# FreeSWITCH at first boot only); anything else: an error, and nothing was written.
set -euo pipefail
root=${1:?usage: freeswitch-local.sh CONF_DIR}
[ -f "$root/local.env" ] || { echo "freeswitch-local.sh: $root/local.env is missing" >&2; exit 1; }
PRIVATE_IP='' PUBLIC_IP='' PUBLIC_IP_ON_INTERFACE='' COOKIE_FILE=''
# shellcheck source=/dev/null
. "$root/local.env"
rc=0
python3 - "$root" "$PRIVATE_IP" "$PUBLIC_IP" "$PUBLIC_IP_ON_INTERFACE" "$COOKIE_FILE" <<'PY' || rc=$?
import ipaddress, os, re, sys
import xml.etree.ElementTree as ET
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
# what the openkazoo package builds (mod_opus, mod_amr, mod_g723_1; PCMU/PCMA/L16 in the core, Speex in mod_speex)
OFFERED = {"OPUS", "PCMU", "PCMA", "SPEEX", "L16", "AMR", "G723"}
PROFILE = {"sip-ip": private, "ext-sip-ip": private, "rtp-ip": public if on_if == "yes" else private,
           "ext-rtp-ip": public, "local-network-acl": "none"}

def set_params(settings, wanted, fold):
    """Every param named in `wanted` gets its value; missing ones are appended."""
    changed, seen = False, set()
    for p in settings.findall("param"):
        name = (p.get("name") or "").lower() if fold else p.get("name")
        if name in wanted:
            seen.add(name)
            if p.get("value") != wanted[name]:
                p.set("value", wanted[name])
                changed = True
    for name, value in wanted.items():
        if name not in seen:
            ET.SubElement(settings, "param", {"name": name, "value": value})
            changed = True
    return changed

def kazoo(doc):  # mod_kazoo compares param names with strcmp
    found = [s for c in doc.iter("configuration") if c.get("name") == "kazoo.conf" for s in c.findall("settings")]
    if len(found) != 1:
        fail(f"expected one kazoo.conf <settings>, found {len(found)}")
    changed = False
    for p in found[0].findall("param"):
        if p.get("name") == "cookie":  # upstream's cookie line becomes cookie-file
            p.set("name", "cookie-file")
            changed = True
    return set_params(found[0], {"listen-ip": private, "cookie-file": cookie_file}, fold=False) or changed

def profiles(doc):  # sofia compares param names with strcasecmp
    changed = False
    for profile in doc.iter("profile"):
        for settings in profile.findall("settings"):
            changed = set_params(settings, PROFILE, fold=True) or changed
    return changed

def codecs(doc):
    changed = False
    for el in doc.iter():
        data = el.get("data", "")
        name, sep, value = data.partition("=")
        if str(el.tag).lower() == "x-pre-process" and el.get("cmd", "").lower() == "set" and sep and name.strip() == "codecs":
            kept = [c.strip() for c in value.split(",") if c.strip().split("@")[0].upper() in OFFERED]
            if not kept:
                fail(f"this FreeSWITCH offers none of the codecs {value}")
            if f"{name}={','.join(kept)}" != data:
                el.set("data", f"{name}={','.join(kept)}")
                changed = True
    return changed

jobs = [(Path(root, "autoload_configs", "kazoo.conf.xml"), kazoo), (Path(root, "freeswitch.xml"), codecs)]
jobs += [(p, profiles) for p in sorted(Path(root, "sip_profiles").glob("*.xml"))]
writes = []
for path, edit in jobs:
    if not path.is_file():
        continue
    try:
        doc = ET.parse(path, ET.XMLParser(target=ET.TreeBuilder(insert_comments=True)))
    except ET.ParseError as error:
        fail(f"{path}: {error}")
    if edit(doc):
        head = path.read_bytes()[:64].lstrip().startswith(b"<?xml")
        writes.append((path, ET.tostring(doc.getroot(), encoding="unicode", xml_declaration=False), head))
for path, text, head in writes:  # all parsed and edited: now write, keeping mode and owner
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n" if head else "") + text + "\n")
    st = path.stat()
    os.chmod(tmp, st.st_mode & 0o7777)
    if os.geteuid() == 0:
        os.chown(tmp, st.st_uid, st.st_gid)
    os.replace(tmp, path)
sys.exit(10 if writes else 0)
PY
exit "$rc"
