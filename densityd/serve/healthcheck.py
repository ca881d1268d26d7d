"""``densityd healthcheck``: ask the local daemon's ``/healthz`` as the daemon serves it.

The image's ``HEALTHCHECK`` runs this. It reads the same settings as ``densityd run`` (the
TOML file, ``DENSITYD_*`` variables, flags), so it asks the port of ``listen_address`` (a
wildcard address on loopback) and, when the web config file has ``tls_server_config``, speaks
TLS and trusts exactly the certificate the daemon serves (``serve.local_client``).
``/healthz`` needs no basic auth (``basic_auth.OPEN_PATHS``); with ``client_auth_type:
RequireAndVerifyClientCert`` the check needs a client certificate (``--client-cert``,
``--client-key``). Exit status 0: healthy; 1: not (the reason on stderr), which is what Docker
expects.
"""

from __future__ import annotations

import sys
from pathlib import Path

from densityd.config import Settings
from densityd.serve.local_client import LocalDaemon, LocalDaemonError


def check_health(
    settings: Settings, timeout: float = 4.0, client_cert: tuple[Path, Path] | None = None
) -> tuple[bool, str]:
    """Whether the daemon of ``settings`` answers ``/healthz`` with 200, and what it said."""
    daemon = LocalDaemon(
        settings,
        timeout=timeout,
        client_cert=client_cert,
        client_cert_hint="--client-cert and --client-key",
    )
    try:
        status, body = daemon.get("/healthz", limit=1024)
    except LocalDaemonError as exc:
        return False, str(exc)
    return status == 200, f"{status}: {body.decode(errors='replace').strip()}"


def healthcheck_command(
    settings: Settings, client_cert: Path | None = None, client_key: Path | None = None
) -> int:
    """Run the check; print the reason when unhealthy; 0 healthy, 1 not."""
    pair = (client_cert, client_key or client_cert) if client_cert else None
    ok, said = check_health(settings, client_cert=pair)
    if not ok:
        print(f"densityd healthcheck: unhealthy: {said}", file=sys.stderr)
    return 0 if ok else 1
