"""Test images made without a registry: Debian's debootstrap builds the bookworm base.

No container registry is reachable, so the base is a bookworm root filesystem with python3,
made by debootstrap and imported as ``BASE_IMAGE`` (kept, and reused when it exists). The
Dockerfile's test and the systemd unit's test build on it.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.integration.backends import DockerCLI, missing_backend

BASE_IMAGE = "local/debian-python:bookworm"


def debian_mirror() -> str | None:
    """The Debian mirror the host's apt uses, so the base's apt goes where the host's goes."""
    sources = ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]
    sources += sorted(glob.glob("/etc/apt/sources.list.d/*.sources"))
    for source in sources:
        try:
            text = Path(source).read_text()
        except OSError:
            continue
        # One-line ("deb [opts] URI suite") and deb822 ("URIs: URI ...") styles.
        for line in re.findall(r"^(?:deb(?:\s+\[[^\]]*\])?|URIs:)\s+(.+)$", text, re.M):
            for uri in line.split():
                if uri.startswith("http") and uri.rstrip("/").endswith("/debian"):
                    return uri
    return None


def make_base_image(docker: DockerCLI) -> None:
    """Debootstrap bookworm with python3 and venv, trim it, import it as ``BASE_IMAGE``."""
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    if not os.path.exists(debootstrap):
        missing_backend("debootstrap is not installed (Debian package debootstrap)")
    if os.geteuid() != 0:
        missing_backend("debootstrap needs root")
    with tempfile.TemporaryDirectory(prefix="densityd-rootfs-", dir="/var/tmp") as tmp:
        rootfs = Path(tmp) / "rootfs"
        mirror = debian_mirror()
        result = subprocess.run(
            [
                debootstrap,
                "--variant=minbase",
                "--include=python3,python3-venv,ca-certificates",
                "bookworm",
                str(rootfs),
                *([mirror] if mirror else []),
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if result.returncode != 0:
            raise AssertionError(f"debootstrap failed:\n{result.stdout[-3000:]}{result.stderr}")
        # What the official slim images leave out too; fewer files make every build step faster.
        trimmed = ("var/cache/apt/*", "var/lib/apt/lists/*", "usr/share/doc/*", "usr/share/man/*")
        for pattern in (*trimmed, "usr/share/locale/*"):
            for path in glob.glob(str(rootfs / pattern)):
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            [docker.binary, "import", "-", BASE_IMAGE],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert tar.stdout is not None
        tar.stdout.close()
        assert tar.wait() == 0 and imported.returncode == 0, imported.stderr


def ensure_base_image(docker: DockerCLI) -> None:
    """Make ``BASE_IMAGE`` unless the engine has it already."""
    if not docker("images", "-q", BASE_IMAGE):
        make_base_image(docker)
