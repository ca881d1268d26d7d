"""Starting the sources: what is logged of the ones not found, by the daemon and one-shots."""

from __future__ import annotations

import logging

import pytest

from densityd.collect.build import SourceSet, build_sampler, build_sources, log_found_sources
from densityd.collect.sampler import SnapshotHolder
from densityd.collect.sources.base import SourceUnavailable
from densityd.config import load_settings
from densityd.model import SourceReading
from tests import paths

SYS = paths.FIXTURES / "sys"


class Missing:
    """A source whose backend is not there."""

    name = "docker"

    def probe(self) -> str:
        raise SourceUnavailable("cannot reach Docker at unix:///nowhere.sock")

    def sample(self) -> SourceReading:
        raise SourceUnavailable("cannot reach Docker at unix:///nowhere.sock")

    def close(self) -> None:
        pass


@pytest.mark.parametrize("retries", [True, False])
def test_only_the_daemon_says_it_will_retry(
    caplog: pytest.LogCaptureFixture, retries: bool
) -> None:
    settings = load_settings({"docker": True, "libvirt": False})
    sources = SourceSet(sources=[Missing()], docker=None, unavailable={})
    with caplog.at_level(logging.WARNING):
        missing = log_found_sources(sources, settings, retries=retries)
        sampler = build_sampler(settings, sources, SnapshotHolder(), retries=retries)
        snapshot = sampler.run_pass()
    assert missing == {"docker": "cannot reach Docker at unix:///nowhere.sock"}
    assert not snapshot.sources[0].up
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings and all("nowhere.sock" in w for w in warnings), warnings
    assert all(("retrying with backoff" in w) is retries for w in warnings), warnings


def test_the_docker_source_names_devices_under_the_configured_sys_root() -> None:
    # The fixture tree names 259:0 nvme0n1, a device this host (and its /sys) does not have.
    settings = load_settings(
        {"libvirt": False, "docker_host": "unix:///nowhere.sock", "sys_root": str(SYS)}
    )
    sources = build_sources(settings)
    try:
        assert sources.docker is not None
        assert sources.docker._device_names.name("259:0") == "nvme0n1"
    finally:
        sources.close()
