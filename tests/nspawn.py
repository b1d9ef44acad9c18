"""Boots rendered user-data for real: Debian 12 hosts in systemd-nspawn on a private network.

- `debian_root()` builds a Debian 12 root once (debootstrap minbase, then cloud-init, systemd and the
  Debian packages the bootstrap installs, so the hosts need no mirror at boot) and caches it under
  /var/cache/kazoo-e2e, keyed by its package list.
- `PrivateNetwork` is a bridge in a network namespace of its own, plus one namespace per host joined
  to it by a veth pair, addressed with the plan's static private IPs. Nothing is added to this
  machine's own network namespace.
- `Host.boot()` gives the host its user-data as a NoCloud seed and boots the cached root (under an
  overlay, so the cache stays clean) with systemd-nspawn inside the host's namespace.
Everything started is stopped and removed by `close()`, also when a test fails.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Optional

CACHE = Path(os.environ.get("KAZOO_E2E_CACHE", "/var/cache/kazoo-e2e"))
MIRROR = os.environ.get("KAZOO_E2E_MIRROR", "http://deb.debian.org/debian")
# What a Debian cloud image has (cloud-init, systemd, sshd, sudo) and the Debian packages the
# bootstrap installs for the roles the e2e test boots, pre-baked so that no host needs a mirror.
BASE_PACKAGES = [
    "cloud-init", "systemd-sysv", "dbus", "udev", "iproute2", "sudo", "openssh-server", "procps",
    "chrony", "nftables", "netbase", "curl", "ca-certificates", "gnupg", "python3",
]
PACKAGES = {
    # Debian 12: brokers, and the HAProxy of application hosts
    "bookworm": BASE_PACKAGES + ["rabbitmq-server", "haproxy", "erlang-base"],
    # Debian 13: proxies, with Debian's own Kamailio 6.0 and the modules the openkazoo 6.0 tree
    # loads, and PostgreSQL (install-proxy.sh with sources.kamailio.repo: debian)
    "trixie": BASE_PACKAGES + [
        "postgresql", "kamailio", "kamailio-kazoo-modules", "kamailio-postgres-modules",
        "kamailio-presence-modules", "kamailio-outbound-modules", "kamailio-extra-modules",
        "kamailio-tls-modules", "kamailio-websocket-modules",
    ],
}
CLOUD_CFG = """\
# e2e: the NoCloud seed only; the network is set up from outside, before boot
datasource_list: [NoCloud, None]
network: {config: disabled}
"""
IMAGE_VERSION = "2"


def tools_available() -> Optional[str]:
    """None when this machine can run the boot test, else why not."""
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("debootstrap", "systemd-nspawn", "ip", "unshare", "nsenter"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (.ci/run installs it)"
    return None


def run(*cmd: str, check: bool = True, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def debian_root(suite: str = "bookworm") -> Path:
    """A Debian root of `suite` with PACKAGES[suite], built once and cached."""
    packages = PACKAGES[suite]
    key = hashlib.sha256((IMAGE_VERSION + MIRROR + suite + " ".join(packages)).encode()).hexdigest()[:12]
    root = CACHE / f"{suite}-{key}"
    if (root / ".kazoo-e2e-complete").exists():
        return root
    CACHE.mkdir(parents=True, exist_ok=True)
    # one builder at a time (test processes may run side by side): the others wait, then find it
    with open(CACHE / f".{suite}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (root / ".kazoo-e2e-complete").exists():
            return root
        return _build_root(suite, packages, root)


def _build_root(suite: str, packages: list[str], root: Path) -> Path:
    work = root.with_name(root.name + ".building")
    shutil.rmtree(work, ignore_errors=True)
    run("debootstrap", "--variant=minbase", suite, str(work), MIRROR, timeout=900)
    # No service may start inside the chroot while packages install.
    policy = work / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    install = (
        f"mount -t proc proc {work}/proc && mount --rbind /sys {work}/sys && mount --rbind /dev {work}/dev && "
        f"chroot {work} apt-get install -y -q --no-install-recommends {' '.join(packages)}"
    )
    run("unshare", "--mount", "--fork", "--propagation", "private", "sh", "-c", install,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, timeout=900)
    policy.unlink()
    (work / "etc/cloud/cloud.cfg.d/99-kazoo-e2e.cfg").write_text(CLOUD_CFG)
    run("chroot", str(work), "apt-get", "clean")
    (work / ".kazoo-e2e-complete").touch()
    work.rename(root)
    return root


class PrivateNetwork:
    """A switch (bridge in its own namespace) and one namespace per attached host."""

    def __init__(self, prefix: str, cidr_prefix: int):
        self.prefix = prefix  # unique per run: namespaces are global to the machine
        self.cidr_prefix = cidr_prefix
        self.switch = f"{prefix}sw"
        self.namespaces: list[str] = []
        run("ip", "netns", "add", self.switch)
        self.namespaces.append(self.switch)
        run("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", self.switch, "link", "set", "br0", "up")

    def attach(self, name: str, address: str, public: str | None = None, routes: tuple[str, ...] = ()) -> str:
        """A namespace on the switch with `address`; `public` (a /32 on the same interface, as
        Hetzner puts a server's public IPv4) and on-link `routes` when given."""
        ns = f"{self.prefix}{name}"
        run("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        port = f"p{len(self.namespaces)}"
        run("ip", "-n", self.switch, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
        run("ip", "-n", self.switch, "link", "set", port, "master", "br0", "up")
        run("ip", "-n", ns, "addr", "add", f"{address}/{self.cidr_prefix}", "dev", "eth0")
        if public:
            run("ip", "-n", ns, "addr", "add", f"{public}/32", "dev", "eth0")
        run("ip", "-n", ns, "link", "set", "eth0", "up")
        run("ip", "-n", ns, "link", "set", "lo", "up")
        for route in routes:
            run("ip", "-n", ns, "route", "add", route, "dev", "eth0")
        return ns

    def close(self) -> None:
        for ns in reversed(self.namespaces):
            run("ip", "netns", "del", ns, check=False)
        self.namespaces.clear()


class Host:
    """One booted host: a systemd-nspawn container sharing the network namespace `ns`."""

    def __init__(self, name: str, ns: str, root: Path, workdir: Path):
        self.name, self.ns, self.root = name, ns, root
        self.dir = workdir / name
        self.upper = self.dir / "upper"
        for d in ("upper", "work", "merged"):
            (self.dir / d).mkdir(parents=True, exist_ok=True)
        self.process: Optional[subprocess.Popen] = None
        self.console = self.dir / "console.log"
        self.hostname = name
        self.cgroups: list[Path] = []  # its own, made at boot (see boot)

    def seed(self, user_data: bytes, fqdn: str) -> None:
        seed = self.upper / "var/lib/cloud/seed/nocloud"
        seed.mkdir(parents=True, exist_ok=True)
        (seed / "user-data").write_bytes(user_data)
        (seed / "meta-data").write_text(f"instance-id: {self.name}-e2e\nlocal-hostname: {fqdn}\n")
        # The hostname the cloud gives a server before cloud-init runs (Hetzner: the server's name).
        self.hostname = fqdn

    def boot(self) -> None:
        d = self.dir
        # A cgroup of its own in every hierarchy systemd uses. With --keep-unit and no systemd on this
        # machine, nspawn puts the container in "payload" under the caller's cgroup: hosts booted from
        # one process would share /payload, and each host's systemd would create and remove the same
        # unit cgroups as the others' (a unit then fails "at step CGROUP: No such file or directory",
        # cloud-config.service among them, and cloud-init reports done without running runcmd).
        self.cgroups = [path / "kazoo-e2e" / self.ns for path in _cgroup_roots()]
        for cgroup in self.cgroups:
            cgroup.mkdir(parents=True, exist_ok=True)
        join = "".join(f"echo $$ > {cgroup}/cgroup.procs && " for cgroup in self.cgroups)
        script = (
            join +
            f"mount -t overlay overlay -o lowerdir={self.root},upperdir={d}/upper,workdir={d}/work {d}/merged && "
            # this machine has no systemd of its own: nspawn wants a /run it can use
            "mount -t tmpfs tmpfs /run && "
            f"exec systemd-nspawn -D {d}/merged --machine={self.ns} --hostname={self.hostname} --register=no --keep-unit --console=pipe "
            "--capability=CAP_NET_ADMIN,CAP_NET_RAW -b"
        )
        log = self.console.open("wb")
        self.process = subprocess.Popen(
            # nsenter, not `ip netns exec`: that remounts /sys and would hide the cgroup hierarchy
            ["nsenter", f"--net=/run/netns/{self.ns}", "unshare", "--mount", "--fork", "--propagation", "private",
             "sh", "-c", script],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )

    def init_pid(self) -> Optional[int]:
        """PID (as seen here) of the container's systemd: a descendant of the boot process running in a
        PID namespace of its own."""
        if self.process is None:
            return None
        own = os.readlink("/proc/self/ns/pid")
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                children.setdefault(ppid, []).append(int(entry))
        queue = [self.process.pid]
        while queue:
            pid = queue.pop(0)
            try:
                if os.readlink(f"/proc/{pid}/ns/pid") != own and Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                    return pid
            except OSError:
                pass
            queue += children.get(pid, [])
        return None

    def exec(self, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a command inside the container (its mount, UTS, IPC, network and PID namespaces)."""
        pid = self.init_pid()
        if pid is None:
            raise RuntimeError(f"{self.name} is not running; console:\n{self.console_text()}")
        return run("nsenter", "-t", str(pid), "-m", "-u", "-i", "-n", "-p", "--", *cmd, check=False, timeout=timeout)

    def file(self, path: str) -> Optional[str]:
        """A file the host wrote, read from outside (the overlay's upper layer), or None."""
        target = self.upper / path.lstrip("/")
        return target.read_text() if target.exists() else None

    def wait_for_cloud_init(self, timeout: float) -> dict:
        """cloud-init's result.json, once it has finished (it is written at the end of the final stage)."""
        import json

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.file("/var/lib/cloud/data/result.json")
            if text:
                try:
                    return json.loads(text)
                except json.JSONDecodeError:
                    pass  # caught mid-write: read it again

            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} stopped during boot; console:\n{self.console_text()}")
            time.sleep(2)
        raise TimeoutError(f"{self.name}: cloud-init did not finish in {timeout:.0f} s; console:\n{self.console_text()}")

    def diagnostics(self) -> str:
        """What a failed boot left behind: cloud-init's warnings and stage timings, the ends of the
        bootstrap's and cloud-init's output logs, the console."""
        parts = []
        init_log = self.file("/var/log/cloud-init.log") or ""
        parts.append("cloud-init.log (stages, warnings):\n" + "\n".join(
            line for line in init_log.splitlines() if "running '" in line or "finished at" in line
            or "WARNING" in line or "Traceback" in line)[-3000:])
        for path in ("/var/lib/cloud/data/status.json", "/var/log/cloud-init-output.log", "/var/log/kazoo-bootstrap.log"):
            parts.append(f"{path}:\n" + (self.file(path) or "(absent)")[-2000:])
        parts.append("console:\n" + self.console_text()[-2000:])
        return "\n".join(parts)

    def console_text(self) -> str:
        return self.console.read_text(errors="replace")[-4000:] if self.console.exists() else ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # nspawn turns SIGTERM into an orderly shutdown of the container
        pid = self.init_pid()
        if pid is not None:
            os.kill(pid, signal.SIGRTMIN + 4)  # systemd: poweroff
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        for cgroup in self.cgroups:  # what the container's systemd left, leaves first
            tree = sorted(cgroup.rglob("*"), key=lambda p: len(p.parts), reverse=True)
            for path in tree + [cgroup, cgroup.parent]:  # the parent goes with the last host
                if path.is_dir():
                    try:
                        path.rmdir()
                    except OSError:
                        pass


def _cgroup_roots() -> list[Path]:
    """This process's cgroup in the unified (v2) hierarchy and in systemd's named v1 one, where mounted."""
    mounts = {}  # "" for cgroup2, "name=systemd" for systemd's v1 hierarchy -> mount point
    for line in Path("/proc/mounts").read_text().splitlines():
        _, point, fstype, options = line.split()[:4]
        if fstype == "cgroup2":
            mounts.setdefault("", Path(point))
        elif fstype == "cgroup" and "name=systemd" in options.split(","):
            mounts.setdefault("name=systemd", Path(point))
    roots = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers in mounts:
            roots.append(mounts[controllers] / path.lstrip("/"))
    return roots
