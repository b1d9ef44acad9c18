"""A throwaway certificate authority for the boot test's SIP-over-TLS checks (openssl, as on any
Debian): a CA, and certificates it signs for a name, each with its own serial."""

from __future__ import annotations

import subprocess
from pathlib import Path


class ThrowawayCA:
    def __init__(self, directory: Path):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.key, self.cert = self.dir / "ca.key", self.dir / "ca.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", str(self.key), "-out", str(self.cert), "-days", "2", "-subj", "/CN=kazoo e2e CA"],
                       check=True, capture_output=True)

    def issue(self, name: str, serial: int) -> tuple[str, str]:
        """(certificate PEM, key PEM) for `name`, with `serial`."""
        key, csr, cert = (self.dir / f"{name}-{serial}.{x}" for x in ("key", "csr", "pem"))
        subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}"], check=True, capture_output=True)
        ext = self.dir / f"{name}-{serial}.ext"
        ext.write_text(f"subjectAltName=DNS:{name}\nextendedKeyUsage=serverAuth\n")
        subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key),
                        "-set_serial", str(serial), "-days", "2", "-extfile", str(ext), "-out", str(cert)],
                       check=True, capture_output=True)
        return cert.read_text(), key.read_text()
