"""The web config file: parsing and checks, bcrypt with its cache, basic auth, reloading.

Certificates are real ones made with the ``openssl`` command, so that what is checked is
what Python's ``ssl`` accepts, not a stand-in.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import ssl
from collections.abc import Callable
from pathlib import Path

import bcrypt
import pytest

from densityd.config import ConfigError, load_settings
from densityd.serve.web_config import (
    WebConfig,
    WebConfigWatcher,
    exposure_warning,
    is_loopback,
    load_web_config,
    parse_web_config,
)
from tests.pki import PKI, issue_certificate, make_pki

# Cost 4, the minimum: these tests check behaviour, not bcrypt's slowness.
ALICE_HASH = bcrypt.hashpw(b"secret", bcrypt.gensalt(rounds=4)).decode()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


_edits = itertools.count(1)


def write(path: Path, text: str) -> Path:
    """Write ``text`` and move its mtime on by seconds, as a later edit would.

    Writes a few milliseconds apart can share an mtime (the kernel's clock is coarse) and
    an edit may keep the size; a real edit comes seconds later.
    """
    path.write_text(text)
    stamp = path.stat().st_mtime_ns + next(_edits) * 1_000_000_000
    os.utime(path, ns=(stamp, stamp))
    return path


def parse(text: str, path: Path = Path("/etc/densityd/web.yml")) -> WebConfig:
    return parse_web_config(text, path)


def test_an_empty_file_means_plain_http_without_auth() -> None:
    config = parse("")
    assert config.tls is None
    assert config.context is None
    assert dict(config.users) == {}


def test_basic_auth_users_load() -> None:
    config = parse(f"basic_auth_users:\n  alice: '{ALICE_HASH}'\n")
    assert dict(config.users) == {"alice": ALICE_HASH}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour: blue\n", "unknown key(s): colour"),
        ("tls_server_config: {cert_file: a, key_file: b, shade: x}\n", "tls_server_config.shade"),
        ("rate_limit: {interval: 1s, burst: 2}\n", "rate_limit (rate limiting)"),
        ("tls_server_config: {cert: PEM, key: PEM}\n", "tls_server_config.cert"),
        ("tls_server_config: {cert_file: a}\n", "needs both cert_file and key_file"),
        (
            "tls_server_config: {cert_file: a, key_file: b, client_auth_type: Maybe}\n",
            "client_auth_type 'Maybe' is not one of",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, "
            "client_auth_type: RequireAndVerifyClientCert}\n",
            "RequireAndVerifyClientCert needs client_ca_file",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, "
            "client_auth_type: RequireAnyClientCert, client_ca_file: c}\n",
            "RequireAnyClientCert (a certificate nobody verifies) is not supported",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, client_ca_file: c}\n",
            "client_auth_type NoClientCert never verifies",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, min_version: SSL3}\n",
            "min_version 'SSL3' is not one of",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, min_version: TLS13, "
            "max_version: TLS12}\n",
            "min_version is above max_version",
        ),
        ("basic_auth_users: {bob: hunter2}\n", "basic_auth_users.bob is not a bcrypt hash"),
        ("basic_auth_users: [bob]\n", "basic_auth_users must be a mapping"),
        ("tls_server_config: [\n", "is not valid YAML"),
    ],
)
def test_bad_files_are_config_errors_naming_file_and_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse(text)
    assert message in str(raised.value)
    assert "/etc/densityd/web.yml" in str(raised.value)


def test_tls_paths_are_relative_to_the_file_and_the_context_is_built(pki: PKI) -> None:
    path = write(
        pki.directory / "web.yml",
        "tls_server_config:\n"
        "  cert_file: server.crt\n  key_file: server.key\n"
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n"
        "  min_version: TLS13\n",
    )
    config = load_web_config(path)
    assert config.tls is not None
    assert config.tls.cert_file == pki.server_cert
    assert config.context is not None
    assert config.context.verify_mode == ssl.CERT_REQUIRED
    assert config.context.minimum_version == ssl.TLSVersion.TLSv1_3


def test_an_unloadable_certificate_names_the_key(pki: PKI, tmp_path: Path) -> None:
    path = write(
        tmp_path / "web.yml",
        f"tls_server_config: {{cert_file: {pki.server_cert}, key_file: {pki.client_key}}}\n",
    )
    with pytest.raises(ConfigError, match=r"tls_server_config\.cert_file .* cannot load"):
        load_web_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_web_config(tmp_path / "missing.yml")


def test_the_setting_is_a_path_or_none() -> None:
    assert load_settings({}).web_config_file is None
    assert load_settings({"web_config_file": "/x/web.yml"}).web_config_file == Path("/x/web.yml")


def test_reload_picks_up_a_changed_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path / "web.yml", "")
    watcher = WebConfigWatcher(path)
    assert dict(watcher.current().users) == {}
    write(path, f"basic_auth_users: {{alice: '{ALICE_HASH}'}}\n")
    with caplog.at_level(logging.INFO, logger="densityd"):
        assert dict(watcher.current().users) == {"alice": ALICE_HASH}
    assert "reloaded" in caplog.text
    assert watcher.last_reload_successful


def test_a_broken_file_keeps_the_previous_config_and_logs_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "web.yml", f"basic_auth_users: {{alice: '{ALICE_HASH}'}}\n")
    watcher = WebConfigWatcher(path)
    before = watcher.current()
    write(path, "basic_auth_users: {alice: plaintext}\n")
    with caplog.at_level(logging.ERROR, logger="densityd"):
        for _ in range(3):
            assert watcher.current() is before
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "basic_auth_users.alice" in errors[0].getMessage()
    assert not watcher.last_reload_successful
    write(path, "basic_auth_users: {}\n")
    assert dict(watcher.current().users) == {}
    assert watcher.last_reload_successful


def rewriting_during_the_load(path: Path, text: str) -> Callable[[Path], WebConfig]:
    """A loader that reads the file, then rewrites it in place before returning, once: the
    write lands between the read and the end of the load, as a racing editor's would."""
    raced = []

    def load(what: Path) -> WebConfig:
        config = load_web_config(what)
        if not raced:
            raced.append(True)
            write(path, text)
        return config

    return load


def test_a_rewrite_racing_the_load_is_loaded_next_time(tmp_path: Path) -> None:
    path = write(tmp_path / "web.yml", f"basic_auth_users: {{alice: '{ALICE_HASH}'}}\n")
    bob = f"basic_auth_users: {{alice: '{ALICE_HASH}', bob: '{ALICE_HASH}'}}\n"
    watcher = WebConfigWatcher(path, load=rewriting_during_the_load(path, bob))
    # The load at start read alice only; bob was written during it. Taking the stamp after
    # the load (the old code) made bob's write look already loaded, for good.
    assert set(watcher.current().users) == {"alice", "bob"}


def test_a_reload_torn_by_an_in_place_rewrite_never_turns_auth_off(tmp_path: Path) -> None:
    path = write(tmp_path / "web.yml", f"basic_auth_users: {{alice: '{ALICE_HASH}'}}\n")
    carol = f"basic_auth_users: {{carol: '{ALICE_HASH}'}}\n"
    loaders: list[Callable[[Path], WebConfig]] = [load_web_config]
    watcher = WebConfigWatcher(path, load=lambda p: loaders[-1](p))
    # An editor truncates the file in place; a reload between that and the write reads it
    # empty, which must not be taken for "no users".
    with path.open("r+") as editing:
        editing.truncate()
    os.utime(path, ns=(path.stat().st_mtime_ns + 10**9,) * 2)
    assert set(watcher.current().users) == {"alice"}, "an empty file must not drop auth"
    assert not watcher.last_reload_successful
    # Half written: valid YAML without the users yet, the rest landing during the load.
    write(path, "http_server_config: {}\n")
    loaders.append(rewriting_during_the_load(path, carol))
    assert set(watcher.current().users) == {"alice"}, "a torn read must not be adopted"
    loaders.append(load_web_config)
    assert set(watcher.current().users) == {"carol"}  # the whole file, at the next check
    assert watcher.last_reload_successful


def test_a_reload_cannot_turn_tls_off(pki: PKI, tmp_path: Path) -> None:
    path = write(
        tmp_path / "web.yml",
        f"tls_server_config: {{cert_file: {pki.server_cert}, key_file: {pki.server_key}}}\n",
    )
    watcher = WebConfigWatcher(path)
    context = watcher.ssl_context()
    write(path, "")
    assert watcher.ssl_context() is context
    assert not watcher.last_reload_successful


def test_a_rotated_certificate_file_alone_triggers_a_reload(pki: PKI, tmp_path: Path) -> None:
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    shutil.copy(pki.server_cert, cert)
    shutil.copy(pki.server_key, key)
    path = write(
        tmp_path / "web.yml", "tls_server_config: {cert_file: server.crt, key_file: server.key}\n"
    )
    watcher = WebConfigWatcher(path)
    first = watcher.ssl_context()
    assert watcher.ssl_context() is first, "nothing changed: no new context"
    new_cert, new_key = issue_certificate(tmp_path, pki.ca, pki.ca_key, "next", 7, server=True)
    # Key first, then certificate: in between the pair does not match, which must not stick.
    write(key, new_key.read_text())
    assert watcher.ssl_context() is first
    write(cert, new_cert.read_text())
    assert watcher.ssl_context() is not first
    assert watcher.last_reload_successful


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("::1", True), ("localhost", True), ("0.0.0.0", False),
     ("::", False), ("192.0.2.7", False), ("example.org", False)],
)  # fmt: skip
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_exposure_warning(pki: PKI) -> None:
    assert exposure_warning("127.0.0.1", None) is None
    warning = exposure_warning("0.0.0.0", None)
    assert warning is not None
    assert "without TLS or authentication" in warning
    assert "--web-config-file" in warning
    with_auth = parse(f"basic_auth_users: {{alice: '{ALICE_HASH}'}}\n")
    assert "clear text" in (exposure_warning("0.0.0.0", with_auth) or "")
    with_tls = parse(
        f"tls_server_config: {{cert_file: {pki.server_cert}, key_file: {pki.server_key}}}\n"
    )
    assert exposure_warning("0.0.0.0", with_tls) is None
