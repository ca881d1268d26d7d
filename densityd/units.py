"""Formatting of quantities for people: bytes with binary suffixes, durations."""

from __future__ import annotations

import textwrap

WIDTH = 100


def human_bytes(value: float | None) -> str:
    """``1536`` -> ``1.5KiB``; ``None`` -> ``-``."""
    if value is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")


def human_duration(seconds: float | None) -> str:
    """``90061`` -> ``1d 1h``; ``None`` -> ``-``. Two units at most: enough to plan with."""
    if seconds is None:
        return "-"
    remaining = round(seconds)
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if remaining >= size or (unit == "s" and not parts):
            count, remaining = divmod(remaining, size)
            parts.append(f"{count}{unit}")
        if len(parts) == 2:
            break
    return " ".join(parts)


def wrap(text: str, indent: str = "", hang: str = "", width: int = WIDTH) -> str:
    """``text`` wrapped to ``width`` columns, later lines indented by ``hang``."""
    return textwrap.fill(
        text,
        width=width,
        initial_indent=indent,
        subsequent_indent=hang or indent,
        break_on_hyphens=False,
        break_long_words=False,
    )
