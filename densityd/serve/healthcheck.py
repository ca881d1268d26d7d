"""``densityd healthcheck``: ask the local daemon's ``/healthz`` as the daemon serves it.

The image's ``HEALTHCHECK`` runs this. It reads the same settings as ``densityd run`` (the
TOML file, ``DENSITYD_*`` variables, flags), so it asks the port of ``listen_address`` (a
wildcard address on loopback) and, when the web config file has ``tls_server_config``, speaks
TLS and trusts exactly the certificate the daemon serves (``cert_file``; a chain's every
certificate is trusted as it is, so a CA-signed one needs no CA). The name is not checked: the
certificate is pinned and the peer is this machine. ``/healthz`` needs no basic auth
(``basic_auth.OPEN_PATHS``); with ``client_auth_type: RequireAndVerifyClientCert`` the check
needs a client certificate (``--client-cert``, ``--client-key``). Exit status 0: healthy;
1: not (the reason on stderr), which is what Docker expects.
"""

from __future__ import annotations

import http.client
import ssl
import sys
from pathlib import Path

from densityd.config import ConfigError, Settings
from densityd.serve.web_config import TLSSettings, load_web_config

_LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def pinned_context(tls: TLSSettings, client_cert: tuple[Path, Path] | None) -> ssl.SSLContext:
    """A client context trusting exactly the certificate(s) in ``tls.cert_file``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False  # pinned to the daemon's own certificate, on loopback
    context.load_verify_locations(cafile=tls.cert_file)
    # Trust the leaf itself, not only a self-signed root: the server's certificate may be
    # signed by a CA whose certificate is not in cert_file.
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    if client_cert is not None:
        context.load_cert_chain(*client_cert)
    return context


def check_health(
    settings: Settings, timeout: float = 4.0, client_cert: tuple[Path, Path] | None = None
) -> tuple[bool, str]:
    """Whether the daemon of ``settings`` answers ``/healthz`` with 200, and what it said."""
    host, port = settings.listen
    host = _LOOPBACK.get(host, host)
    connection: http.client.HTTPConnection
    try:
        config = load_web_config(settings.web_config_file) if settings.web_config_file else None
        if config is not None and config.tls is not None:
            context = pinned_context(config.tls, client_cert)
            connection = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
        else:
            connection = http.client.HTTPConnection(host, port, timeout=timeout)
    except (ConfigError, OSError, ssl.SSLError) as exc:
        return False, f"cannot set up the check: {exc}"
    try:
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        body = response.read(1024).decode(errors="replace").strip()
    except ssl.SSLError as exc:
        hint = "" if client_cert else " (mutual TLS needs --client-cert and --client-key)"
        return False, f"TLS with {host}:{port} failed: {exc}{hint}"
    except (OSError, http.client.HTTPException) as exc:
        return False, f"no answer from {host}:{port}: {exc}"
    finally:
        connection.close()
    return response.status == 200, f"{response.status}: {body}"


def healthcheck_command(
    settings: Settings, client_cert: Path | None = None, client_key: Path | None = None
) -> int:
    """Run the check; print the reason when unhealthy; 0 healthy, 1 not."""
    pair = (client_cert, client_key or client_cert) if client_cert else None
    ok, said = check_health(settings, client_cert=pair)
    if not ok:
        print(f"densityd healthcheck: unhealthy: {said}", file=sys.stderr)
    return 0 if ok else 1
