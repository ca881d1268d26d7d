"""A client of the daemon on this machine, found from the same settings as ``densityd run``.

``densityd healthcheck`` and ``densityd plan`` ask the daemon these settings describe: the
port of ``listen_address`` (a wildcard address on loopback) and, when the web config file has
``tls_server_config``, TLS trusting exactly the certificate the daemon serves (``cert_file``;
a chain's every certificate is trusted as it is, so a CA-signed one needs no CA). The name is
not checked: the certificate is pinned and the peer is this machine.
"""

from __future__ import annotations

import http.client
import ssl
from pathlib import Path

from densityd.config import ConfigError, Settings
from densityd.serve.web_config import TLSSettings, WebConfig, load_web_config

_LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


class LocalDaemonError(Exception):
    """The daemon could not be asked: no answer, TLS failed, or the web config is broken."""


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


class LocalDaemon:
    """The daemon of ``settings``, asked one ``GET`` at a time, each within ``timeout``."""

    errors: tuple[type[Exception], ...] = (LocalDaemonError,)

    def __init__(
        self,
        settings: Settings,
        timeout: float = 4.0,
        client_cert: tuple[Path, Path] | None = None,
        client_cert_hint: str = "a client certificate",
    ) -> None:
        """``client_cert_hint``: how the caller is given a client certificate, for the error
        a server that requires one causes."""
        host, self.port = settings.listen
        self.host = _LOOPBACK.get(host, host)
        self.timeout = timeout
        self._settings = settings
        self._client_cert = client_cert
        self._client_cert_hint = client_cert_hint
        self._config: WebConfig | None = None
        self._config_read = False

    def _web_config(self) -> WebConfig | None:
        if not self._config_read:
            path = self._settings.web_config_file
            try:
                self._config = load_web_config(path) if path else None
            except (ConfigError, OSError) as exc:
                raise LocalDaemonError(f"cannot read the web config {path}: {exc}") from exc
            self._config_read = True
        return self._config

    @property
    def url(self) -> str:
        """Where the daemon is asked, for messages: ``http://127.0.0.1:9847``."""
        config = self._web_config()
        scheme = "https" if config is not None and config.tls is not None else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    @property
    def requires_auth(self) -> bool:
        """Whether the daemon asks for basic auth (on every path but ``/healthz``)."""
        config = self._web_config()
        return config is not None and bool(config.users)

    def get(self, path: str, limit: int = 16 << 20) -> tuple[int, bytes]:
        """``GET path``: the status and at most ``limit`` bytes of the body.

        Raises ``LocalDaemonError`` when the daemon cannot be reached or TLS fails.
        """
        config = self._web_config()
        connection: http.client.HTTPConnection
        try:
            if config is not None and config.tls is not None:
                context = pinned_context(config.tls, self._client_cert)
                connection = http.client.HTTPSConnection(
                    self.host, self.port, timeout=self.timeout, context=context
                )
            else:
                connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        except (OSError, ssl.SSLError) as exc:
            raise LocalDaemonError(f"cannot set up the connection: {exc}") from exc
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read(limit)
        except ssl.SSLError as exc:
            hint = "" if self._client_cert else f" (mutual TLS needs {self._client_cert_hint})"
            raise LocalDaemonError(f"TLS with {self.host}:{self.port} failed: {exc}{hint}") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise LocalDaemonError(f"no answer from {self.host}:{self.port}: {exc}") from exc
        finally:
            connection.close()
