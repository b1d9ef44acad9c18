"""lib.sh's apt helpers on a fake host: a repository's signing key is stored under the name apt reads
it by (apt: a keyring named *.asc is read as armoured, *.gpg as binary; Debian's sources.list(5),
signed-by), which the last review found wrong (SignalWire's binary key stored as .asc: NO_PUBKEY);
repositories shared by several components are added once."""

from __future__ import annotations

import subprocess

import pytest

from core.bootstrap import CLOUD_INIT_DIR
from fakehost import FakeHost, available

SCRIPTS = CLOUD_INIT_DIR / "scripts"

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



@pytest.mark.skipif(not __import__("os").path.exists("/usr/bin/epmd"), reason="needs Debian's erlang-base (.ci/run)")
def test_ensure_epmd_starts_the_hosts_one_epmd_and_fails_beside_a_single_address_one(tmp_path):
    """ensure_epmd checks the socket unit's state and what answers, not `enable --now`'s exit code.
    Through the systemctl stand-in (epmd.socket binds [::]:4369 and runs the real epmd): on a clean
    host 4369 answers. Beside an epmd bound to one address first (what CouchDB's erlexec started with
    ERL_EPMD_ADDRESS=<ip> left; the review reproduced EADDRINUSE for the socket unit), the bootstrap
    stops, naming it, although that epmd answers on loopback (epmd_srv.c always adds it)."""
    host = FakeHost(tmp_path, {"KAZOO_SKIP": ""})
    prelude = ". /opt/kazoo-bootstrap/lib.sh && apt_install() { :; } && EPMD_WAIT_SECONDS=0.1 && "
    clean = host.run(prelude + "ensure_epmd && echo OK && epmd -names")
    assert clean.returncode == 0 and "OK" in clean.stdout, clean.stderr
    assert "epmd: up and running on port 4369" in clean.stdout
    # a private epmd on 127.0.0.2 only (as ERL_EPMD_ADDRESS makes one): the unit cannot bind
    taken = host.run(prelude + "ERL_EPMD_ADDRESS=127.0.0.2 epmd -daemon && sleep 0.3 && ensure_epmd")
    assert taken.returncode != 0
    assert "epmd.socket is failed: another epmd holds 4369" in taken.stderr


def test_sup_runs_as_the_kazoo_account_with_its_home(tmp_path):
    """kz_sup never runs Kazoo's code as root (review B4: the release is kazoo's, so root running
    its sup would run what kazoo can rewrite): the real runuser, no stand-in on PATH."""
    host = FakeHost(tmp_path, {"KAZOO_SKIP": ""})
    run = host.run(". /opt/kazoo-bootstrap/remote/lib.sh && ensure_system_user kazoo /opt/kazoo && "
                   "SUP=/usr/bin/env kz_sup", env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"})
    assert run.returncode == 0, run.stderr
    env = dict(line.split("=", 1) for line in run.stdout.splitlines() if "=" in line)
    assert env["USER"] == "kazoo" and env["HOME"] == "/opt/kazoo" and env["ERL_LIBS"] == "/opt/kazoo/lib"
    uid = host.run(". /opt/kazoo-bootstrap/remote/lib.sh && ensure_system_user kazoo /opt/kazoo && "
                   "SUP=/usr/bin/id kz_sup -un", env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    assert uid.stdout.strip() == "kazoo", uid.stdout + uid.stderr


@pytest.mark.skipif(not __import__("os").path.exists("/usr/bin/erl"), reason="needs Debian's erlang-base (.ci/run)")
def test_kazoo_logs_go_to_var_log_kazoo_in_configs_erlang_still_reads(tmp_path):
    """lager_log_root on kazoo-configs 4.4's own relx configs (the pinned tree): the result is still
    a term file Erlang reads (file:consult, as the VM reads -config), with log_root in lager's
    environment, and a second run changes nothing."""
    import upstream
    for name in ("kazoo_apps.config", "ecallmgr.config"):
        config = tmp_path / name
        config.write_text((upstream.tree("kazoo_configs") / "etc/kazoo" / name).read_text())
        for _ in range(2):
            run = subprocess.run(["bash", "-c", f'. {SCRIPTS}/lib.sh && lager_log_root "$1" /var/log/kazoo', "x", str(config)],
                                 capture_output=True, text=True)
            assert run.returncode == 0, run.stderr
        assert config.read_text().count("log_root") == 1
        check = subprocess.run(["erl", "-noshell", "-eval",
                                f'{{ok, [Env]}} = file:consult("{config}"), Lager = proplists:get_value(lager, Env), '
                                'io:format("~s", [proplists:get_value(log_root, Lager)]), halt().'],
                               capture_output=True, text=True, timeout=60)
        assert check.stdout == "/var/log/kazoo", check.stdout + check.stderr


def test_retry_tries_as_often_as_told_and_stops_at_the_first_success(tmp_path):
    """apt, curl and the CouchDB waits lean on retry: a command failing twice then working is run
    three times; one that never works, exactly as many times as asked, and the failure comes through."""
    host = FakeHost(tmp_path, {"KAZOO_SKIP": ""})
    run = host.run(
        f"cd {tmp_path} && . /opt/kazoo-bootstrap/lib.sh && RETRY_SECONDS=0 && "
        "flaky() { echo x >> flaky; [ $(wc -l < flaky) -ge 3 ]; }; "
        "retry 5 flaky && echo \"flaky ran $(wc -l < flaky)\"; "
        "never() { echo x >> never; false; }; "
        "if retry 4 never; then echo 'never passed'; else echo \"never ran $(wc -l < never)\"; fi"
    )
    assert "flaky ran 3" in run.stdout and "never ran 4" in run.stdout, run.stdout + run.stderr


def test_an_archive_that_does_not_match_its_sha256_is_never_unpacked(tmp_path):
    """fetch_archive checks the sha256 before anything is unpacked (or the old tree removed)."""
    import hashlib
    import io
    import tarfile

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        info = tarfile.TarInfo("top/evil.sh")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"echo\n"))
    archive = tmp_path / "tree.tar.gz"
    archive.write_bytes(raw.getvalue())
    good = hashlib.sha256(raw.getvalue()).hexdigest()
    host = FakeHost(tmp_path, {"KAZOO_SKIP": ""})
    fetch = ". /opt/kazoo-bootstrap/lib.sh && RETRY_SECONDS=0 && TREE_URL=file://{archive} TREE_SHA256={sha} && fetch_archive tree /var/tree"
    prelude = "mkdir -p /var/tree && echo old > /var/tree/kept && "
    bad = host.run(prelude + "(" + fetch.format(archive=archive, sha="0" * 64) + "); echo rc=$?; ls /var/tree")
    assert "sha256 mismatch" in bad.stdout + bad.stderr
    assert "kept" in bad.stdout and "evil.sh" not in bad.stdout  # the old tree stays, nothing unpacked
    ok = host.run(prelude + fetch.format(archive=archive, sha=good) + " && ls /var/tree")
    assert ok.returncode == 0 and "evil.sh" in ok.stdout and "kept" not in ok.stdout, ok.stdout + ok.stderr


def test_pins_hold_even_against_a_newer_version_and_accounts_cannot_log_in(tmp_path):
    """apt_preferences(5): a priority above 1000 installs the pinned version even as a downgrade (a
    repository or the Debian archive carrying a newer one never wins), as the real apt decides it: a
    local repository offers foo 1.2.3 and 1.3.0, 1.3.0 is installed, and apt's candidate is still the
    pinned 1.2.3. Service accounts get no shell."""
    repo = tmp_path / "repo"
    repo.mkdir()
    stanza = ("Package: foo\nVersion: {v}\nArchitecture: all\nMaintainer: t <t@example.com>\n"
              "Filename: ./foo_{v}_all.deb\nSize: 1\nSHA256: {h}\nDescription: a test package\n")
    (repo / "Packages").write_text("\n".join(stanza.format(v=v, h="0" * 64) for v in ("1.2.3", "1.3.0")))
    (tmp_path / "test.list").write_text(f"deb [trusted=yes] file:{repo} ./\n")
    apt = (f"-o Dir::Etc::sourcelist={tmp_path}/test.list -o Dir::Etc::sourceparts=- -o Dir::State::status={tmp_path}/status "
           "-o APT::Sandbox::User=root")  # (the repository is in a directory only root reaches)
    # dpkg's status: 1.3.0 installed (the newer one, from before the pin)
    (tmp_path / "status").write_text("Package: foo\nStatus: install ok installed\nVersion: 1.3.0\nArchitecture: all\n"
                                      "Maintainer: t <t@example.com>\nDescription: a test package\n")
    host = FakeHost(tmp_path, {"KAZOO_SKIP": ""})
    run = host.run(f"apt-get {apt} -q update; . /opt/kazoo-bootstrap/lib.sh && "
                   "FOO_REPO=debian FOO_VERSION='1.2.*' && use_source foo 'foo*' && "
                   f"apt-cache {apt} policy foo && ensure_system_user svcfoo /nonexistent && getent passwd svcfoo")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Installed: 1.3.0" in run.stdout and "Candidate: 1.2.3" in run.stdout, run.stdout
    assert run.stdout.strip().splitlines()[-1].endswith(":/usr/sbin/nologin")
