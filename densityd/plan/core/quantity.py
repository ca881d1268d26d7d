"""Parsing what operators type: sizes, cores, durations, resource lists and profiles.

Sizes follow Kubernetes quantities (``512Mi``, ``2G``, ``1.5Gi``, ``1e9``), cores take
millicores (``500m``), durations take Prometheus-style units (``14d``, ``1d12h``). Every
error is a ``QuantityError`` whose message names the option, the key and the offending
text, for example::

    --profile: memory: '512Mx' is not a quantity (examples: 512Mi, 2G, 1.5Gi, 1000000)

Pure functions, no I/O.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from fractions import Fraction
from typing import Literal

from densityd.plan.core.model import PartialResources, Profile, Resource, Resources
from densityd.units import human_bytes

BYTES_EXAMPLES = "512Mi, 2G, 1.5Gi, 1000000"
CPU_EXAMPLES = "2, 0.5, 500m"
DURATION_EXAMPLES = "14d, 36h, 90m, 1d12h, 3600"
RATIO_EXAMPLES = "4, 1.5"

RESOURCE_KEYS: tuple[str, ...] = ("cpu", "memory", "disk")
PROFILE_KEYS: tuple[str, ...] = (*RESOURCE_KEYS, "image", "vcpus", "hugepages")
HUGEPAGES_EXAMPLES = "true, 2Mi, 1Gi"

# Kubernetes accepts only lowercase "k"; "K" is everywhere else, so both are taken.
_SUFFIXES: dict[str, int] = {
    "": 1,
    "k": 1000,
    "K": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
    "P": 1000**5,
    "E": 1000**6,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
    "Pi": 1024**5,
    "Ei": 1024**6,
}
_BINARY_SUFFIXES = ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki")
_DECIMAL_SUFFIXES = ("E", "P", "T", "G", "M", "k")
_DURATION_UNITS: dict[str, int] = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}

# ASCII digits only: re's \d would take any Unicode digit.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_UNSIGNED = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")
_EXPONENT = re.compile(r"[eE][+-]?[0-9]+")
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)([wdhms])")
_NAME = re.compile(r"[A-Za-z0-9_.-]+")

# Bounds that keep exact arithmetic cheap on hostile input; no real quantity is near them.
_MAX_TEXT = 64
_MAX_EXPONENT = 30
# Kubernetes quantities are int64; 8Ei is the size no host will have.
_MAX_BYTES = 2**63


class QuantityError(ValueError):
    """A value an operator typed is not valid; the message says which part and why.

    ``problem`` is the reason alone; ``option`` and ``key`` say where it was found and are
    prefixed to the message (``--profile: memory: '512Mx' is not a quantity ...``).
    """

    def __init__(self, problem: str, *, option: str | None = None, key: str | None = None):
        self.problem = problem
        self.option = option
        self.key = key
        super().__init__(": ".join(part for part in (option, key, problem) if part))

    def within(self, *, option: str, key: str | None = None) -> QuantityError:
        """The same problem, located in ``option`` (and ``key``)."""
        return QuantityError(self.problem, option=option, key=key or self.key)


def parse_bytes(text: str) -> float:
    """A size in bytes from a Kubernetes-style quantity: ``512Mi`` -> ``536870912``.

    Plain numbers, decimal suffixes (k/K M G T P E: powers of 1000), binary suffixes
    (Ki Mi Gi Ti Pi Ei: powers of 1024), decimal exponents (``1e9``), and a trailing ``B``
    for friendliness (``512MiB``, ``2GB``, ``100B``). Rounded up to a whole byte, as
    Kubernetes does.
    """
    value = _exact_bytes(text)
    return float(math.ceil(value))


def _exact_bytes(text: str) -> Fraction:
    """The exact (unrounded) number of bytes ``text`` says."""
    stripped = _checked_text(text, "quantity", BYTES_EXAMPLES)
    number = _NUMBER.match(stripped)
    if number is None:
        raise _not_a(text, "quantity", BYTES_EXAMPLES)
    mantissa = Fraction(number.group())
    rest = stripped[number.end() :]
    if _EXPONENT.fullmatch(rest):
        exponent = int(rest[1:])
        if abs(exponent) > _MAX_EXPONENT:
            raise QuantityError(f"'{text}' has an exponent out of range (at most e{_MAX_EXPONENT})")
        multiplier = Fraction(10) ** exponent
    else:
        if rest.startswith("m"):
            # Kubernetes reads "512m" as 0.512 bytes, Docker as 512 MiB: refuse to guess.
            raise QuantityError(
                f"'{text}' is ambiguous: write Mi for mebibytes or M for megabytes "
                f"(examples: {BYTES_EXAMPLES})"
            )
        suffix = rest[:-1] if rest.endswith("B") else rest
        if suffix not in _SUFFIXES:
            raise _not_a(text, "quantity", BYTES_EXAMPLES)
        multiplier = Fraction(_SUFFIXES[suffix])
    value = mantissa * multiplier
    if value < 0:
        raise QuantityError(f"'{text}' is negative")
    if value > _MAX_BYTES:
        raise QuantityError(f"'{text}' is too large (at most 8Ei)")
    return value


def parse_cpu(text: str) -> float:
    """Cores from ``2``, ``0.5`` or millicores ``500m``; zero is allowed, negatives are not."""
    stripped = _checked_text(text, "number of cores", CPU_EXAMPLES)
    millicores = stripped.endswith("m")
    number = stripped[:-1] if millicores else stripped
    if not _NUMBER.fullmatch(number):
        raise _not_a(text, "number of cores", CPU_EXAMPLES)
    value = Fraction(number) / (1000 if millicores else 1)
    if value < 0:
        raise QuantityError(f"'{text}' is negative")
    return float(value)


def parse_duration(text: str) -> float:
    """Seconds from ``14d``, ``36h``, ``90m``, ``3600s``, ``2w``, ``1d12h`` or ``3600``.

    Units go from the largest to the smallest, each at most once (as in Prometheus); a plain
    number is seconds. The duration must be more than zero.
    """
    stripped = _checked_text(text, "duration", DURATION_EXAMPLES)
    if _UNSIGNED.fullmatch(stripped):
        seconds = Fraction(stripped)
    else:
        seconds = Fraction(0)
        position = 0
        previous_rank = -1
        ranks = list(_DURATION_UNITS)
        for part in _DURATION_PART.finditer(stripped):
            rank = ranks.index(part.group(2))
            if part.start() != position or rank <= previous_rank:
                raise _not_a(text, "duration", DURATION_EXAMPLES)
            seconds += Fraction(part.group(1)) * _DURATION_UNITS[part.group(2)]
            position, previous_rank = part.end(), rank
        if position != len(stripped):
            raise _not_a(text, "duration", DURATION_EXAMPLES)
    if seconds <= 0:
        raise QuantityError(f"'{text}' must be more than 0")
    return float(seconds)


def parse_ratio(text: str) -> float:
    """A plain positive number, such as an overcommit ratio: ``4``, ``1.5``."""
    stripped = _checked_text(text, "ratio", RATIO_EXAMPLES)
    if not _UNSIGNED.fullmatch(stripped):
        raise _not_a(text, "ratio", RATIO_EXAMPLES)
    value = Fraction(stripped)
    if value <= 0:
        raise QuantityError(f"'{text}' must be more than 0")
    return float(value)


def parse_resources(
    text: str, *, option: str, kind: Literal["capacity", "reserved", "ratio"]
) -> PartialResources:
    """Per-resource values from ``cpu=4,memory=8Gi,disk=100G``; keys left out are ``None``.

    ``capacity`` values must be more than 0, ``reserved`` values may be 0, ``ratio`` values
    are plain positive numbers.
    """
    values: dict[str, float] = {}
    for key, raw in _pairs(text, option=option, keys=RESOURCE_KEYS).items():
        try:
            if kind == "ratio":
                values[key] = parse_ratio(raw)
                continue
            value = parse_cpu(raw) if key == "cpu" else parse_bytes(raw)
        except QuantityError as error:
            raise error.within(option=option, key=key) from None
        if kind == "capacity" and value <= 0:
            raise QuantityError(f"'{raw}' must be more than 0", option=option, key=key)
        values[key] = value
    return PartialResources(**values)


def parse_profile(text: str, *, option: str = "--profile") -> Profile:
    """The shape of one more workload from ``[NAME=]cpu=0.5,memory=512Mi,disk=2Gi``.

    Keys: ``cpu`` (cores), ``memory``, ``disk``, ``image`` (image size, paid once per
    host), ``vcpus`` (whole vCPUs, for the VM view), ``hugepages`` (as a VM, its memory is
    backed by huge pages: ``true`` for the host's default size, or a page size such as
    ``2Mi`` or ``1Gi``; ``false`` for none). At least one of cpu, memory and disk is
    needed; the ones left out are 0. Both views get the same sizes. Without a NAME, the name
    is the canonical text: the keys in the order above, the values as typed.
    """
    name: str | None = None
    head, sep, rest = text.partition("=")
    # A leading NAME is a non-key followed by key=value pairs: "web=cpu=1" but not "web=1".
    if sep and head.strip() not in PROFILE_KEYS and "=" in rest.split(",", 1)[0]:
        name = head.strip()
        if not _NAME.fullmatch(name):
            raise QuantityError(
                f"the name '{name}' may only hold letters, digits, '_', '.' and '-'",
                option=option,
            )
        text = rest
    raw = _pairs(text, option=option, keys=PROFILE_KEYS)
    if not any(key in raw for key in RESOURCE_KEYS):
        raise QuantityError(
            f"'{text.strip()}' gives none of cpu, memory, disk (example: cpu=0.5,memory=512Mi)",
            option=option,
        )
    values: dict[str, float] = {}
    vcpus: int | None = None
    hugepages: tuple[bool, int | None] = (False, None)
    for key, value in raw.items():
        try:
            if key == "vcpus":
                vcpus = _parse_vcpus(value)
            elif key == "hugepages":
                hugepages = parse_hugepages(value)
            else:
                values[key] = parse_cpu(value) if key == "cpu" else parse_bytes(value)
        except QuantityError as error:
            raise error.within(option=option, key=key) from None
    resources = Resources(
        cpu=values.get("cpu", 0.0),
        memory=values.get("memory", 0.0),
        disk=values.get("disk", 0.0),
    )
    canonical = ",".join(f"{key}={raw[key]}" for key in PROFILE_KEYS if key in raw)
    return Profile(
        name=name if name is not None else canonical,
        demand=resources,
        allocation=resources,
        origin="given",
        image_bytes=values.get("image", 0.0),
        vcpus=vcpus,
        hugepages=hugepages[0],
        hugepage_size=hugepages[1],
    )


def parse_hugepages(text: str) -> tuple[bool, int | None]:
    """``true`` (the host's default page size), ``false``, or a page size (``2Mi``, ``1Gi``):
    whether memory is backed by huge pages, and their size (None: the default)."""
    stripped = _checked_text(text, "huge page setting", HUGEPAGES_EXAMPLES).lower()
    if stripped in ("true", "yes", "on"):
        return True, None
    if stripped in ("false", "no", "off"):
        return False, None
    size = int(parse_bytes(text))
    # Huge pages are a power of two above the base page (64 KiB to 16 GiB on the arches
    # Linux has them for); anything else is a typo, such as 2M for 2Mi.
    if size < 64 * 1024 or size & (size - 1):
        raise QuantityError(
            f"'{text.strip()}' is not a huge page size: a power of two of at least 64Ki "
            f"(examples: {HUGEPAGES_EXAMPLES})"
        )
    return True, size


def format_quantity(value: float, resource: Resource) -> str:
    """A value as an operator would type it: cores ``0.5``; bytes ``512Mi``, ``2G``, ``100``.

    Bytes that are an exact multiple of a suffix (``10000Mi``, or up to three decimals:
    ``1.5Gi``) use the shortest such form, which parses back to the same value; other sizes
    fall back to ``human_bytes`` (``117.7MiB``).
    """
    if not math.isfinite(value):
        return str(value)
    if resource is Resource.CPU:
        return _plain_decimal(Decimal(repr(value)))
    if value < 0 or value != math.floor(value):
        return human_bytes(value)
    exact = Fraction(int(value))
    candidates = [str(int(value))] if value < 1024 else []
    for suffix in (*_BINARY_SUFFIXES, *_DECIMAL_SUFFIXES):
        scaled = exact / _SUFFIXES[suffix]
        # Whole multiples, or up to three decimals below 10000 (short to read): all parse back
        # exactly; anything else is left to human_bytes.
        whole = scaled.denominator == 1
        if scaled >= 1 and (whole or (scaled < 10000 and (scaled * 1000).denominator == 1)):
            candidates.append(
                _plain_decimal(Decimal(scaled.numerator) / scaled.denominator) + suffix
            )
    if not candidates:
        return human_bytes(value)
    return min(candidates, key=len)


def _plain_decimal(value: Decimal) -> str:
    """``Decimal('1.500')`` -> ``1.5``, ``Decimal('2E+1')`` -> ``20``: no exponent or 0 tail."""
    text = format(value.normalize(), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _parse_vcpus(text: str) -> int:
    """A whole, positive number of vCPUs."""
    stripped = _checked_text(text, "whole number of vCPUs", "1, 2, 4")
    if not stripped.isascii() or not stripped.isdigit() or int(stripped) == 0:
        raise QuantityError(f"'{text}' is not a whole number of vCPUs above 0 (examples: 1, 2, 4)")
    return int(stripped)


def _pairs(text: str, *, option: str, keys: tuple[str, ...]) -> dict[str, str]:
    """``key=value`` pairs, separated by commas, each key known and given once."""
    example = "cpu=4,memory=8Gi,disk=100G" if keys == RESOURCE_KEYS else "cpu=0.5,memory=512Mi"
    if not text.strip():
        raise QuantityError(f"nothing given (example: {example})", option=option)
    pairs: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            raise QuantityError(f"an empty entry in '{text}' (example: {example})", option=option)
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep:
            raise QuantityError(
                f"'{item.strip()}' has no '=' (write key=value, example: {example})", option=option
            )
        if key not in keys:
            raise QuantityError(
                f"unknown key '{key}' in '{item.strip()}' (known: {', '.join(keys)})", option=option
            )
        if key in pairs:
            raise QuantityError(f"given twice in '{text}'", option=option, key=key)
        if not value:
            raise QuantityError("no value after '='", option=option, key=key)
        pairs[key] = value
    return pairs


def _checked_text(text: str, what: str, examples: str) -> str:
    """``text`` without surrounding blanks; refuses empty and absurdly long input."""
    stripped = text.strip()
    if not stripped:
        raise QuantityError(f"an empty {what} (examples: {examples})")
    if len(stripped) > _MAX_TEXT:
        raise QuantityError(f"'{text[:_MAX_TEXT]}...' is too long for a {what}")
    return stripped


def _not_a(text: str, what: str, examples: str) -> QuantityError:
    """The error for text that does not read as ``what``."""
    article = "an" if what[0] in "aeiou" else "a"
    return QuantityError(f"'{text}' is not {article} {what} (examples: {examples})")
