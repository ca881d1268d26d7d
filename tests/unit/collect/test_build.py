"""Starting the sources: what is logged of the ones not found, by the daemon and one-shots."""

from __future__ import annotations

import logging

import pytest

from densityd.collect.build import SourceSet, build_sampler, log_found_sources
from densityd.collect.sampler import SnapshotHolder
from densityd.collect.sources.base import SourceUnavailable
from densityd.config import load_settings
from densityd.model import SourceReading


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
