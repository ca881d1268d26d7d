"""Fixtures over real backends: the Docker engine, the tiny image, densityd daemons.

Nothing here is mocked. The tests need a running Docker engine (``.ci/run`` starts one) and
skip when there is none, unless ``DENSITYD_REQUIRE_BACKENDS=1`` (set by ``.ci/run``) turns a
missing backend into a failure so that CI can never pass by skipping.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.integration.backends import (
    TINY_IMAGE,
    Containers,
    Daemon,
    DockerCLI,
    build_tiny_image,
    docker_binary,
    free_port,
    missing_backend,
)


@pytest.fixture(scope="session")
def docker_cli(tmp_path_factory: pytest.TempPathFactory) -> DockerCLI:
    """The local Docker engine, with the tiny image present."""
    docker = DockerCLI(docker_binary())
    if not docker.ok():
        missing_backend("no Docker engine answers (start dockerd; see .ci/run)")
    if not docker("images", "-q", TINY_IMAGE):
        build_tiny_image(docker, tmp_path_factory.mktemp("image"))
    return docker


@pytest.fixture
def containers(docker_cli: DockerCLI) -> Iterator[Containers]:
    """A per-test container factory with cleanup."""
    factory = Containers(docker_cli)
    try:
        yield factory
    finally:
        factory.remove_all()


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """Start ``densityd run`` with extra flags; every daemon is stopped after the test."""
    daemons: list[Daemon] = []

    def start(*args: str, interval: float = 1.0, env: dict[str, str] | None = None) -> Daemon:
        port = free_port()
        log_path = tmp_path / f"densityd-{port}.log"
        command = [
            sys.executable,
            "-m",
            "densityd",
            "run",
            "--listen-address",
            f"127.0.0.1:{port}",
            "--interval",
            str(interval),
            "--state-dir",
            str(tmp_path / "state"),
            *args,
        ]
        log_file = log_path.open("w")
        process = subprocess.Popen(
            command,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
        )
        daemon = Daemon(process, f"http://127.0.0.1:{port}", log_path)
        daemons.append(daemon)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"densityd exited with {process.returncode}:\n{daemon.log()}")
            try:
                if requests.get(f"{daemon.url}/healthz", timeout=2).status_code == 200:
                    return daemon
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise AssertionError(f"densityd did not become healthy:\n{daemon.log()}")

    yield start
    for daemon in daemons:
        daemon.stop()
