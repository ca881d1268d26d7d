"""The web configuration file (``--web-config-file``): TLS and basic auth, reloaded on change.

The format is the exporter-toolkit's, which Prometheus's own exporters read::

    tls_server_config:
      cert_file: server.crt          # relative paths are relative to this file
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert
      client_ca_file: ca.crt
      min_version: TLS12
    basic_auth_users:
      prometheus: $2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG

The file and the files it names are checked for changes on every new connection, so a
rotated certificate or a new password applies without a restart; a file that no longer
loads leaves the previous configuration in force.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from densityd.config import ConfigError

log = logging.getLogger("densityd")

# Go's tls.ClientAuthType names. Python's ssl cannot ask for a certificate without verifying
# it, so RequireAnyClientCert is refused rather than silently made stricter or looser;
# RequestClientCert asks for a certificate nobody looks at, so not asking is equivalent.
_CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
_TOP_KEYS = {"tls_server_config", "basic_auth_users", "http_server_config"}
_TLS_KEYS = {
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "min_version",
    "max_version",
    "prefer_server_cipher_suites",
}
# Known exporter-toolkit keys densityd cannot honour; ignoring them would weaken what the
# operator asked for, so they are errors.
_UNSUPPORTED = {
    "rate_limit": "rate limiting",
    "tls_server_config.cert": "an inline certificate (use cert_file)",
    "tls_server_config.key": "an inline key (use key_file)",
    "tls_server_config.client_ca": "an inline client CA (use client_ca_file)",
    "tls_server_config.client_allowed_sans": "client SAN matching",
    "tls_server_config.cipher_suites": "Go cipher suite names",
    "tls_server_config.curve_preferences": "Go curve names",
}
_BCRYPT_HASH = re.compile(r"^\$2[abxy]\$\d\d\$[./A-Za-z0-9]{53}$")


@dataclass(frozen=True)
class TLSSettings:
    """``tls_server_config``, with paths resolved against the web config file's directory."""

    cert_file: Path
    key_file: Path
    client_auth_type: str = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: str = "TLS12"
    max_version: str = "TLS13"

    @property
    def files(self) -> tuple[Path, ...]:
        """The files whose change means a reload."""
        ca = (self.client_ca_file,) if self.client_ca_file else ()
        return (self.cert_file, self.key_file, *ca)


@dataclass(frozen=True)
class WebConfig:
    """One loaded web configuration: the TLS context (None for plain HTTP) and the users."""

    tls: TLSSettings | None = None
    users: Mapping[str, str] = field(default_factory=dict)
    context: ssl.SSLContext | None = None


def parse_web_config(text: str, path: Path) -> WebConfig:
    """Parse and check the YAML of ``path``; raise ``ConfigError`` naming the file and key."""
    import yaml  # only with a web config file: most daemons have none

    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"web config file {path} is not valid YAML: {exc}") from None
    if document is None:
        return WebConfig()
    top = _mapping(document, path, "the top level")
    _check_keys(top, _TOP_KEYS, path, "")
    if "http_server_config" in top:
        # HTTP/2 and extra response headers: nothing that weakens security when absent.
        log.info("web config file %s: http_server_config is ignored", path)
    tls = _parse_tls(top["tls_server_config"], path) if "tls_server_config" in top else None
    users = _parse_users(top.get("basic_auth_users"), path)
    return WebConfig(tls=tls, users=users, context=tls_context(tls, path) if tls else None)


def _mapping(value: Any, path: Path, where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ConfigError(f"web config file {path}: {where} must be a mapping")
    return value


def _check_keys(values: Mapping[str, Any], known: set[str], path: Path, prefix: str) -> None:
    unknown = sorted(prefix + key for key in values if key not in known)
    unsupported = [key for key in unknown if key in _UNSUPPORTED]
    if unsupported:
        what = ", ".join(f"{key} ({_UNSUPPORTED[key]})" for key in unsupported)
        raise ConfigError(f"web config file {path}: not supported by densityd: {what}")
    if unknown:
        raise ConfigError(f"web config file {path}: unknown key(s): {', '.join(unknown)}")


def _parse_tls(value: Any, path: Path) -> TLSSettings:
    tls = _mapping(value, path, "tls_server_config")
    _check_keys(tls, _TLS_KEYS, path, "tls_server_config.")

    def text(key: str, default: str | None = None) -> str | None:
        got = tls.get(key, default)
        if got is not None and not isinstance(got, str):
            raise ConfigError(f"web config file {path}: tls_server_config.{key} must be a string")
        return got or default

    def file(key: str) -> Path | None:
        name = text(key)
        return None if name is None else path.parent / name

    cert, key = file("cert_file"), file("key_file")
    if cert is None or key is None:
        raise ConfigError(
            f"web config file {path}: tls_server_config needs both cert_file and key_file"
        )
    auth = text("client_auth_type", "NoClientCert")
    if auth == "RequireAnyClientCert":
        raise ConfigError(
            f"web config file {path}: tls_server_config.client_auth_type RequireAnyClientCert "
            "(a certificate nobody verifies) is not supported; use RequireAndVerifyClientCert"
        )
    if auth not in _CLIENT_AUTH:
        raise ConfigError(
            f"web config file {path}: tls_server_config.client_auth_type {auth!r} is not one of "
            f"{', '.join([*_CLIENT_AUTH, 'RequireAnyClientCert'])}"
        )
    ca = file("client_ca_file")
    if _CLIENT_AUTH[auth] != ssl.CERT_NONE and ca is None:
        raise ConfigError(
            f"web config file {path}: tls_server_config.client_auth_type {auth} "
            "needs client_ca_file"
        )
    if ca is not None and _CLIENT_AUTH[auth] == ssl.CERT_NONE:
        raise ConfigError(
            f"web config file {path}: tls_server_config.client_ca_file is set but "
            f"client_auth_type {auth} never verifies a client certificate"
        )
    versions = {}
    for name, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        version = text(name, default)
        if version not in _TLS_VERSIONS:
            raise ConfigError(
                f"web config file {path}: tls_server_config.{name} {version!r} is not one of "
                f"{', '.join(_TLS_VERSIONS)}"
            )
        versions[name] = version
    if _TLS_VERSIONS[versions["min_version"]] > _TLS_VERSIONS[versions["max_version"]]:
        raise ConfigError(
            f"web config file {path}: tls_server_config.min_version is above max_version"
        )
    return TLSSettings(cert, key, auth, ca, versions["min_version"], versions["max_version"])


def _parse_users(value: Any, path: Path) -> dict[str, str]:
    if value is None:
        return {}
    users = _mapping(value, path, "basic_auth_users")
    for user, hashed in users.items():
        if not isinstance(hashed, str) or not _BCRYPT_HASH.match(hashed):
            raise ConfigError(
                f"web config file {path}: basic_auth_users.{user} is not a bcrypt hash "
                "(make one with: htpasswd -nBC 10 '' | tr -d ':\\n')"
            )
    return dict(users)


def tls_context(tls: TLSSettings, path: Path) -> ssl.SSLContext:
    """A new server-side context for ``tls``; raise ``ConfigError`` naming the bad file."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _TLS_VERSIONS[tls.min_version]
    context.maximum_version = _TLS_VERSIONS[tls.max_version]
    context.verify_mode = _CLIENT_AUTH[tls.client_auth_type]
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"web config file {path}: tls_server_config.cert_file {tls.cert_file} / "
            f"key_file {tls.key_file}: cannot load: {exc}"
        ) from None
    if tls.client_ca_file is not None:
        try:
            context.load_verify_locations(cafile=tls.client_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"web config file {path}: tls_server_config.client_ca_file "
                f"{tls.client_ca_file}: cannot load: {exc}"
            ) from None
    return context


def load_web_config(path: Path) -> WebConfig:
    """Read and check the web config file; raise ``ConfigError`` naming the file and key."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"web config file {path}: cannot read: {exc.strerror}") from None
    return parse_web_config(text, path)


def _fingerprint(paths: Iterable[Path]) -> tuple[tuple[int, ...] | None, ...]:
    """What changes when any of ``paths`` is rewritten, replaced or removed."""
    stamps: list[tuple[int, ...] | None] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            stamps.append(None)
        else:
            stamps.append((st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(stamps)


class WebConfigWatcher:
    """The current web configuration, reloaded when its file or the files it names change.

    TLS cannot be turned on or off without a restart (the listening socket's protocol is
    fixed), so a reload that would do either is refused like any other bad file.
    """

    def __init__(self, path: Path, load: Callable[[Path], WebConfig] = load_web_config) -> None:
        self._path = path
        self._load = load
        self._lock = threading.Lock()
        stamp = self._stamp_of(None)
        self._config = load(path)  # a bad file at start is the caller's ConfigError
        # Taken before the load, like every stamp: a write during the load is seen next time.
        self._stamp = stamp
        self.last_reload_successful = True

    @property
    def path(self) -> Path:
        """The web config file."""
        return self._path

    def _stamp_of(self, config: WebConfig | None) -> tuple[tuple[int, ...] | None, ...]:
        """The fingerprint of the file and of the certificate files ``config`` names."""
        tls_files = config.tls.files if config is not None and config.tls else ()
        return _fingerprint((self._path, *tls_files))

    def current(self) -> WebConfig:
        """The latest configuration that loaded, after reloading if anything changed."""
        with self._lock:
            # A config naming other certificate files than the stamp covered gives a stamp of
            # another shape, hence one more load, which stamps the files it names.
            now = self._stamp_of(self._config)
            if now != self._stamp:
                # Only the file set changed (at start, before the files named were known):
                # the same file loaded again is not news.
                self._reload(quiet=len(now) != len(self._stamp))
            return self._config

    def _reload(self, quiet: bool = False) -> None:
        # The stamp is the one from before the load, never one taken after it: a write that
        # lands during the load then differs from it, and the next connection loads again
        # (taking it after the load lost such a write for good). It is kept on failure too,
        # so that a bad file is reported once, not on every connection.
        before = self._stamp_of(self._config)
        self._stamp = before
        try:
            if before[0] is not None and before[0][1] == 0:
                # What an in-place rewrite looks like between truncating and writing; taken
                # as "no auth" it would open the server until the write lands.
                raise ConfigError(
                    f"web config file {self._path} is empty (a rewrite under way?); to turn "
                    "basic auth off, write basic_auth_users: {}"
                )
            config = self._load(self._path)
            if (config.tls is None) != (self._config.tls is None):
                raise ConfigError(
                    f"web config file {self._path}: turning TLS on or off needs a restart"
                )
        except ConfigError as exc:
            if self._stamp_of(self._config) != before:
                return  # it changed while loading: a half-written file; load it again next time
            self.last_reload_successful = False
            log.error("%s; keeping the previous web configuration", exc)
            return
        if self._stamp_of(self._config) != before:
            # Rewritten while it was read: what was read may be half old and half new (basic
            # auth cut off, say). Keep the previous configuration; the next connection sees
            # the change against the stamp from before and loads the file whole.
            log.debug("web config file %s changed while loading; loading it again", self._path)
            return
        self._config = config
        self.last_reload_successful = True
        log.log(logging.DEBUG if quiet else logging.INFO, "web config file %s reloaded", self._path)

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context for a new connection (only called when TLS is on)."""
        context = self.current().context
        assert context is not None, "TLS cannot be turned off by a reload"
        return context


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a listen address's host part) is reachable only from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve to anything


def exposure_warning(host: str, config: WebConfig | None) -> str | None:
    """A warning when a non-loopback listener lacks TLS or authentication, else None."""
    if is_loopback(host):
        return None
    tls = config is not None and config.tls is not None
    auth = config is not None and bool(config.users)
    if not tls and not auth:
        return (
            f"listening on {host} without TLS or authentication: anyone who can reach the "
            "port can read the metrics and the plan API; see --web-config-file"
        )
    if not tls:
        return (
            f"listening on {host} with basic auth but without TLS: passwords cross the "
            "network in clear text; add tls_server_config to the --web-config-file"
        )
    return None


class WebConfigCollector:
    """``densityd_web_config_last_reload_successful``: whether the web config file loads."""

    def __init__(self, watcher: WebConfigWatcher) -> None:
        self._watcher = watcher

    def collect(self) -> Iterator[Metric]:
        """One gauge, 1 while the last (re)load of the web config file succeeded."""
        gauge = GaugeMetricFamily(
            "densityd_web_config_last_reload_successful",
            "1 if the last reload of the web config file succeeded, 0 if the previous "
            "configuration is still in force because the file no longer loads.",
        )
        gauge.add_metric([], 1.0 if self._watcher.last_reload_successful else 0.0)
        yield gauge
