"""lib.sh's apt helpers on a fake host: a repository's signing key is stored under the name apt reads
it by (apt: a keyring named *.asc is read as armoured, *.gpg as binary; Debian's sources.list(5),
signed-by), which the last review found wrong (SignalWire's binary key stored as .asc: NO_PUBKEY);
repositories shared by several components are added once."""

from __future__ import annotations

import subprocess

import pytest

from fakehost import FakeHost, available

pytestmark = pytest.mark.skipif(not available(), reason="needs root and unshare (as in .ci/run)")


def keys(tmp_path):
    armoured, binary = tmp_path / "key.asc", tmp_path / "key.gpg"
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--homedir", str(home), "--batch", "--quiet"]
    subprocess.run(gpg + ["--passphrase", "", "--quick-gen-key", "test@example.com", "ed25519", "sign", "1d"], check=True)
    armoured.write_bytes(subprocess.run(gpg + ["--export", "--armor"], check=True, capture_output=True).stdout)
    binary.write_bytes(subprocess.run(gpg + ["--export"], check=True, capture_output=True).stdout)
    return armoured, binary


def test_keys_are_named_by_what_they_hold_and_repositories_added_once(tmp_path):
    armoured, binary = keys(tmp_path)
    host = FakeHost(tmp_path, {"KAZOO_SKIP": ""})
    script = (
        ". /opt/kazoo-bootstrap/lib.sh && "
        f"add_apt_source file://{armoured} https://repo.example.com/debian bookworm && "
        f"add_apt_source file://{armoured} https://repo.example.com/debian bookworm && "  # a second component
        f"add_apt_source file://{binary} https://other.example.com/deb bookworm && "
        "cat /etc/apt/sources.list.d/kazoo-*.list && ls /usr/share/keyrings/"
    )
    run = host.run(script)
    assert run.returncode == 0, run.stderr
    lists = [l for l in run.stdout.splitlines() if l.startswith("deb ")]
    assert len(lists) == 2  # the shared repository once
    by_repo = {l.split()[2]: l.split()[1].removeprefix("[signed-by=").removesuffix("]") for l in lists}
    assert by_repo["https://repo.example.com/debian"].endswith(".asc")
    assert by_repo["https://other.example.com/deb"].endswith(".gpg")
