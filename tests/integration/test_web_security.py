"""TLS, mutual TLS and basic auth on the real daemon, with real TLS clients.

Certificates come from the ``openssl`` command; clients are ``requests`` and ``ssl``. Docker
and libvirt are off: only the HTTP side is under test, and it needs neither.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import bcrypt
import pytest
import requests

from tests.integration.backends import Daemon, free_port
from tests.pki import PKI, issue_certificate, make_pki

pytestmark = pytest.mark.integration

NO_BACKENDS = ("--no-docker", "--no-libvirt", "--no-history")
# Cost 10, as htpasswd -B makes: the cache of successes is part of what is exercised.
ALICE_HASH = bcrypt.hashpw(b"secret", bcrypt.gensalt(rounds=10)).decode()


@pytest.fixture
def pki(tmp_path: Path) -> PKI:
    return make_pki(tmp_path / "pki")


def web_config(pki: PKI, *, users: bool = True, mutual: bool = False) -> Path:
    """A web config file beside the certificates, naming them relatively."""
    lines = ["tls_server_config:", "  cert_file: server.crt", "  key_file: server.key"]
    if mutual:
        lines += ["  client_auth_type: RequireAndVerifyClientCert", "  client_ca_file: ca.crt"]
    if users:
        lines += ["basic_auth_users:", f"  alice: '{ALICE_HASH}'"]
    path = pki.directory / "web.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


def port_of(daemon: Daemon) -> int:
    return int(daemon.url.rsplit(":", 1)[1])


def peer_serial(port: int, pki: PKI) -> int:
    """The serial number of the certificate the daemon presents to a new connection."""
    context = ssl.create_default_context(cafile=str(pki.ca))
    context.load_cert_chain(pki.client_cert, pki.client_key)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        certificate = tls.getpeercert()
    assert certificate is not None
    return int(str(certificate["serialNumber"]), 16)


def test_basic_auth_over_tls(start_daemon: Callable[..., Daemon], pki: PKI) -> None:
    path = web_config(pki)
    daemon = start_daemon(
        *NO_BACKENDS,
        "--web-config-file",
        str(path),
        scheme="https",
        probe={"verify": str(pki.ca), "auth": ("alice", "secret")},
    )
    url = f"{daemon.url}/metrics"
    for auth in (None, ("alice", "wrong"), ("mallory", "secret")):
        response = requests.get(url, verify=str(pki.ca), auth=auth, timeout=10)
        assert response.status_code == 401, auth
        assert response.headers["WWW-Authenticate"] == 'Basic realm="densityd"'
        assert "densityd_" not in response.text
    for other in ("/", "/api/v1/plan"):
        assert requests.get(daemon.url + other, verify=str(pki.ca), timeout=10).status_code == 401
    # /healthz is open to health checks, and says nothing but whether passes finish.
    health = requests.get(daemon.url + "/healthz", verify=str(pki.ca), timeout=10)
    assert (health.status_code, health.text) == (200, "ok\n")
    response = requests.get(url, verify=str(pki.ca), auth=("alice", "secret"), timeout=10)
    assert response.status_code == 200
    assert "densityd_web_config_last_reload_successful 1.0" in response.text
    assert "densityd_host_" in response.text


def test_plain_http_to_the_tls_port_gets_no_metrics(
    start_daemon: Callable[..., Daemon], pki: PKI
) -> None:
    daemon = start_daemon(
        *NO_BACKENDS,
        "--web-config-file",
        str(web_config(pki, users=False)),
        scheme="https",
        probe={"verify": str(pki.ca)},
    )
    plain = daemon.url.replace("https://", "http://", 1) + "/metrics"
    try:
        response = requests.get(plain, timeout=10)
    except requests.ConnectionError:
        pass  # the expected outcome: the handshake fails and the connection is closed
    else:
        assert response.status_code != 200
        assert "densityd_" not in response.text
    # The failed handshake did not take the server down.
    assert requests.get(daemon.url + "/metrics", verify=str(pki.ca), timeout=10).ok


def test_mutual_tls_requires_a_certificate_from_the_ca(
    start_daemon: Callable[..., Daemon], pki: PKI, tmp_path: Path
) -> None:
    daemon = start_daemon(
        *NO_BACKENDS,
        "--web-config-file",
        str(web_config(pki, users=False, mutual=True)),
        scheme="https",
        probe={"verify": str(pki.ca), "cert": (str(pki.client_cert), str(pki.client_key))},
    )
    url = f"{daemon.url}/metrics"
    with pytest.raises(requests.ConnectionError):
        requests.get(url, verify=str(pki.ca), timeout=10)
    stranger = make_pki(tmp_path / "stranger")
    with pytest.raises(requests.ConnectionError):
        requests.get(
            url,
            verify=str(pki.ca),
            cert=(str(stranger.client_cert), str(stranger.client_key)),
            timeout=10,
        )
    response = requests.get(
        url, verify=str(pki.ca), cert=(str(pki.client_cert), str(pki.client_key)), timeout=10
    )
    assert response.status_code == 200
    assert "densityd_host_" in response.text


def test_a_rotated_certificate_is_served_without_a_restart(
    start_daemon: Callable[..., Daemon], pki: PKI, tmp_path: Path
) -> None:
    daemon = start_daemon(
        *NO_BACKENDS,
        "--web-config-file",
        str(web_config(pki, users=False, mutual=True)),
        scheme="https",
        probe={"verify": str(pki.ca), "cert": (str(pki.client_cert), str(pki.client_key))},
    )
    port = port_of(daemon)
    assert peer_serial(port, pki) == 1001
    staging = tmp_path / "staging"
    staging.mkdir()
    cert, key = issue_certificate(staging, pki.ca, pki.ca_key, "server", 1002, server=True)
    # As certificate tooling does: each file replaced atomically, the key first.
    os.replace(key, pki.server_key)
    os.replace(cert, pki.server_cert)
    deadline = time.monotonic() + 10
    while peer_serial(port, pki) != 1002:
        assert time.monotonic() < deadline, f"still the old certificate:\n{daemon.log()}"
        time.sleep(0.2)
    assert daemon.process.poll() is None, "the daemon must not have restarted"
    # A broken file on disk keeps the rotated configuration serving, and says so.
    (pki.directory / "web.yml").write_text("tls_server_config: {cert_file: nope.crt}\n")
    assert peer_serial(port, pki) == 1002
    # /metrics is rendered once per sampling pass, so the gauge shows on a later scrape.
    deadline = time.monotonic() + 10
    while (
        "densityd_web_config_last_reload_successful 0.0"
        not in requests.get(
            f"{daemon.url}/metrics",
            verify=str(pki.ca),
            cert=(str(pki.client_cert), str(pki.client_key)),
            timeout=10,
        ).text
    ):
        assert time.monotonic() < deadline, "the failed reload is not exported"
        time.sleep(0.2)
    assert "keeping the previous web configuration" in daemon.log()


def healthcheck(daemon: Daemon, web_yml: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``densityd healthcheck`` as the image runs it: the daemon's settings in the environment."""
    env = {
        **os.environ,
        "DENSITYD_LISTEN_ADDRESS": f"0.0.0.0:{port_of(daemon)}",  # checked on loopback
        "DENSITYD_WEB_CONFIG_FILE": str(web_yml),
    }
    return subprocess.run(
        [sys.executable, "-m", "densityd", "healthcheck", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )


def test_the_healthcheck_speaks_tls_and_passes_basic_auth(
    start_daemon: Callable[..., Daemon], pki: PKI
) -> None:
    path = web_config(pki)
    daemon = start_daemon(
        *NO_BACKENDS,
        "--web-config-file",
        str(path),
        scheme="https",
        probe={"verify": str(pki.ca)},
    )
    # The image's old check, plain HTTP without credentials, could never pass here.
    plain = daemon.url.replace("https://", "http://", 1) + "/healthz"
    with pytest.raises(requests.ConnectionError):
        requests.get(plain, timeout=5)
    result = healthcheck(daemon, path)
    assert result.returncode == 0, result.stderr
    daemon.stop()
    result = healthcheck(daemon, path)
    assert result.returncode == 1
    assert "unhealthy: no answer from 127.0.0.1" in result.stderr


def test_the_healthcheck_with_mutual_tls_needs_a_client_certificate(
    start_daemon: Callable[..., Daemon], pki: PKI
) -> None:
    path = web_config(pki, mutual=True)
    daemon = start_daemon(
        *NO_BACKENDS,
        "--web-config-file",
        str(path),
        scheme="https",
        probe={"verify": str(pki.ca), "cert": (str(pki.client_cert), str(pki.client_key))},
    )
    result = healthcheck(daemon, path)
    assert result.returncode == 1
    assert "--client-cert" in result.stderr
    args = ("--client-cert", str(pki.client_cert), "--client-key", str(pki.client_key))
    result = healthcheck(daemon, path, *args)
    assert result.returncode == 0, result.stderr


def run_briefly(args: list[str], until: str, timeout: float = 15) -> tuple[int | None, str]:
    """Run ``densityd run ARGS`` until it exits or logs ``until``; its status and output."""
    process = subprocess.Popen(
        [sys.executable, "-m", "densityd", "run", *NO_BACKENDS, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    output = ""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            output += line
            if not line and process.poll() is not None:
                return process.returncode, output
            if until in line:
                return None, output
        raise AssertionError(f"neither exited nor logged {until!r}:\n{output}")
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=10)


def test_a_bad_web_config_file_exits_2_naming_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text("basic_auth_users: {alice: hunter2}\n")
    status, output = run_briefly(
        ["--listen-address", f"127.0.0.1:{free_port()}", "--web-config-file", str(path)],
        until="listening on",
    )
    assert status == 2, output
    assert str(path) in output
    assert "basic_auth_users.alice" in output


def test_listening_exposed_without_tls_or_auth_warns(tmp_path: Path) -> None:
    status, output = run_briefly(
        ["--listen-address", f"0.0.0.0:{free_port()}", "--state-dir", str(tmp_path)],
        until="without TLS or authentication",
    )
    assert status is None, output
    assert "--web-config-file" in output
