"""What every source offers the sampler."""

from __future__ import annotations

from typing import Protocol

from densityd.model import SourceReading


class SourceUnavailable(Exception):
    """The backend cannot be reached; the message says why, for the log and ``sample``."""


class Source(Protocol):
    """A backend the sampler runs once per pass, under a deadline."""

    name: str

    def probe(self) -> str:
        """Connect and describe what was found, or raise ``SourceUnavailable`` saying why."""
        ...

    def sample(self) -> SourceReading:
        """Take one reading; raise on failure (the sampler isolates and reports it)."""
        ...

    def close(self) -> None:
        """Release connections and threads."""
        ...
