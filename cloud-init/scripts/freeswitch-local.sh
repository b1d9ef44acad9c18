#!/bin/bash
# Applies this host's values to upstream's kazoo-configs-freeswitch tree (argument: its root):
# the Erlang cookie shared with ecallmgr, and the public IP FreeSWITCH advertises for SIP and RTP.
# Exits 0 whether or not anything changed; edits are idempotent.
set -euo pipefail
root=$1
# shellcheck source=/dev/null
. "${HOST_ENV:-/etc/kazoo-bootstrap/host.env}"

kazoo_conf="$root/autoload_configs/kazoo.conf.xml"
if [ -f "$kazoo_conf" ]; then
  sed -i -E "s#(<param name=\"cookie\" value=\")[^\"]*(\"[[:space:]]*/>)#\1${ERLANG_COOKIE}\2#" "$kazoo_conf"
fi
for profile in "$root"/sip_profiles/*.xml; do
  [ -f "$profile" ] || continue
  # Behind AWS's 1:1 NAT "auto" would advertise the private address: name the public one.
  sed -i -E "s#(<param name=\"ext-(rtp|sip)-ip\" value=\")[^\"]*(\"[[:space:]]*/>)#\1${PUBLIC_IP}\3#" "$profile"
done
