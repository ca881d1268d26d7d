"""A throwaway certificate authority for the TLS tests, made with the ``openssl`` command."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class PKI:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate."""

    directory: Path
    ca: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def issue_certificate(
    pki_dir: Path, ca: Path, ca_key: Path, name: str, serial: int, *, server: bool
) -> tuple[Path, Path]:
    """A key and a certificate signed by ``ca``, written as NAME.crt and NAME.key."""
    key, csr, cert = (pki_dir / f"{name}.{ext}" for ext in ("key", "csr", "crt"))
    extensions = pki_dir / f"{name}.ext"
    usage = "serverAuth" if server else "clientAuth"
    san = "subjectAltName = IP:127.0.0.1, DNS:localhost\n" if server else ""
    extensions.write_text(
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature\n"
        f"extendedKeyUsage = {usage}\n"
        "subjectKeyIdentifier = hash\n"
        "authorityKeyIdentifier = keyid\n" + san
    )
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-out", csr, "-subj", f"/CN={name}",
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-set_serial", str(serial),
        "-days", "2", "-extfile", extensions, "-out", cert,
    )  # fmt: skip
    return cert, key


def make_pki(directory: Path, server_serial: int = 1001) -> PKI:
    """A fresh CA with a server and a client certificate under ``directory``."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed (Debian package openssl)")
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = directory / "ca.crt", directory / "ca.key"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=densityd test CA",
    )  # fmt: skip
    server_cert, server_key = issue_certificate(
        directory, ca, ca_key, "server", server_serial, server=True
    )
    client_cert, client_key = issue_certificate(directory, ca, ca_key, "client", 2001, server=False)
    return PKI(directory, ca, ca_key, server_cert, server_key, client_cert, client_key)
