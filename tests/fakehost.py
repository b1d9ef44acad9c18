"""Runs the remote scripts as on a host, without a host: inside private mount and network namespaces
(`unshare`) with overlays on /etc, /opt and /var, so the scripts find /opt/kazoo-bootstrap and
/etc/kazoo-bootstrap where they expect them and nothing leaks onto this machine. Stand-ins for the
programs that need a real Kazoo (`sup`, `systemctl`, `sudo`) come first on PATH; each logs its calls
to calls.log. CouchDB is a server instead (stubs/fake_couchdb.py, which real curl talks to): start
its nodes with `run(..., setup=...)`, see tests/test_database.py. Needs root (as .ci/run has)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from core.bootstrap import CLOUD_INIT_DIR, SCRIPTS

STUBS = Path(__file__).resolve().parent / "stubs"
OVERLAID = ("etc", "opt", "var")


def available() -> bool:
    return os.geteuid() == 0 and shutil.which("unshare") is not None


class FakeHost:
    def __init__(self, tmp: Path, host_env: dict[str, str]):
        self.tmp = tmp
        self.state = tmp / "state"  # stand-ins keep their state (e.g. the fake CouchDB) here
        self.state.mkdir()
        (tmp / "host.env").write_text("".join(f"{k}='{v}'\n" for k, v in host_env.items()))

    @property
    def calls(self) -> list[str]:
        log = self.state / "calls.log"
        return log.read_text().splitlines() if log.exists() else []

    def run(self, command: str, stdin: str | None = None, env: dict[str, str] | None = None,
            setup: str | None = None) -> subprocess.CompletedProcess:
        """Run `command` (a shell line, as pulumi-command would) on the fake host, as root.

        `setup`: shell lines run on the fake host first (a failure fails the run). Every run has
        loopback up and a PID namespace of its own (a fresh /proc shows only the fake host's
        processes): servers started in the background, such as fake CouchDB nodes, end with the run.
        """
        t = self.tmp
        mounts = "\n".join(
            f"mkdir -p {t}/ovl/{d}/u {t}/ovl/{d}/w && "
            f"mount -t overlay overlay -o lowerdir=/{d},upperdir={t}/ovl/{d}/u,workdir={t}/ovl/{d}/w /{d}"
            for d in OVERLAID
        )
        scripts = " ".join(str(CLOUD_INIT_DIR / "scripts" / s) for s in SCRIPTS)
        driver = f"""set -e
{mounts}
mkdir -p /opt/kazoo-bootstrap/remote /etc/kazoo-bootstrap /var/log
install -m 0755 {scripts} /opt/kazoo-bootstrap/
install -m 0755 {CLOUD_INIT_DIR}/remote/*.sh /opt/kazoo-bootstrap/remote/
install -m 0600 {t}/host.env /etc/kazoo-bootstrap/host.env
ip link set lo up
{'bash -c "$KAZOO_SETUP" </dev/null' if setup is not None else ''}
set +e
bash -c "$KAZOO_COMMAND"
"""
        environment = {
            **os.environ,
            "PATH": f"{STUBS}:{os.environ['PATH']}",
            "STUB_STATE": str(self.state),
            "KAZOO_COMMAND": command,
            # configure.sh's wait for a restarted CouchDB/crossbar (150 tries, 2 s apart on a host): the
            # stand-ins answer at once, so a test that lets one be missing fails in 10 s, not at the
            # run's timeout (a test of the wait itself sets its own)
            "SERVE_TRIES": "20", "SERVE_SECONDS": "0.5",
            **({"KAZOO_SETUP": setup} if setup is not None else {}),
            **(env or {}),
        }
        # a PID namespace of the run's own: whatever it starts in the background (fake CouchDB
        # nodes, the epmd the systemctl stand-in starts for epmd.socket) ends with it
        pid = ["--pid", "--fork", "--mount-proc"]
        return subprocess.run(
            ["unshare", "--mount", "--net", *pid, "--propagation", "private", "bash", "-c", driver],
            input=stdin, capture_output=True, text=True, env=environment, timeout=120,
        )

    def file(self, path: str) -> str:
        """A file the last run left in an overlaid directory."""
        top, _, rest = path.lstrip("/").partition("/")
        return (self.tmp / "ovl" / top / "u" / rest).read_text()


def stage_files(files: dict[str, tuple[str, str]], directory: Path) -> Path:
    """Rendered files ({path on the host: (content, mode)}, as core.bootstrap.rendered_files gives
    them) laid out under `directory` as they sit under /etc/kazoo-bootstrap/files on a host."""
    for path, (content, mode) in files.items():
        target = directory / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        target.chmod(int(mode, 8))
    return directory


# Records the command line of every process of the fake host (its own PID namespace and /proc) until
# the run ends: `python3 -c PROC_WATCH OUTFILE &` in a setup.
PROC_WATCH = r"""
import os, sys, time
seen = set()
out = sys.stdout if sys.argv[1] == "-" else open(sys.argv[1], "w")
while True:
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = open(f"/proc/{pid}/cmdline", "rb").read()
            except OSError:
                continue
            if cmd and cmd not in seen:
                seen.add(cmd)
                out.write(cmd.replace(b"\0", b" ").decode(errors="replace") + "\n")
                out.flush()
    time.sleep(0.002)
"""
