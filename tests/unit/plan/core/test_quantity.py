"""What operators type: sizes, cores, durations, resource lists and profiles."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from densityd.plan.core.model import GIB, MIB, PartialResources, Resource, Resources
from densityd.plan.core.quantity import (
    QuantityError,
    format_quantity,
    parse_bytes,
    parse_cpu,
    parse_duration,
    parse_profile,
    parse_ratio,
    parse_resources,
)

# Characters quantities are made of, so the fuzz reaches past the first check.
QUANTITY_ALPHABET = "0123456789.eEkKmMGTPiB+-wdhs ,=_abcpuorydiskvmage"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("1000000", 1_000_000),
        ("512Mi", 536_870_912),
        ("512MiB", 536_870_912),
        ("2G", 2_000_000_000),
        ("2GB", 2_000_000_000),
        ("1.5Gi", 1_610_612_736),
        ("1k", 1000),
        ("1K", 1000),
        ("1kB", 1000),
        ("3Ki", 3072),
        ("4M", 4_000_000),
        ("5T", 5 * 10**12),
        ("1P", 10**15),
        ("2E", 2 * 10**18),
        ("1Ti", 2**40),
        ("1Pi", 2**50),
        ("7Ei", 7 * 2**60),
        ("1e3", 1000),
        ("1e9", 10**9),
        ("2E6", 2_000_000),
        ("1.5e3", 1500),
        ("1e+3", 1000),
        ("100B", 100),
        (".5Ki", 512),
        ("5.Mi", 5 * MIB),
        ("+1Ki", 1024),
        ("  64Mi ", 64 * MIB),
        # Decimal arithmetic is exact: a float product would make 1100000.0000000002 -> 1100001.
        ("1.1M", 1_100_000),
        # Fractions of a byte round up, as Kubernetes does.
        ("0.1Ki", 103),
        ("1.5", 2),
        ("1e-3", 1),
    ],
)
def test_parse_bytes_valid(text: str, expected: int) -> None:
    value = parse_bytes(text)
    assert value == expected
    assert isinstance(value, float)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("512Mx", "not a quantity"),
        ("Mi", "not a quantity"),
        ("1.5.5Mi", "not a quantity"),
        ("512 Mi", "not a quantity"),
        ("512mi", "ambiguous"),
        ("512m", "ambiguous"),
        ("512mb", "ambiguous"),
        ("1b", "not a quantity"),
        ("1BB", "not a quantity"),
        ("1iB", "not a quantity"),
        ("1e", "not a quantity"),
        ("1e3B", "not a quantity"),
        ("-1", "negative"),
        ("-1Gi", "negative"),
        ("nan", "not a quantity"),
        ("inf", "not a quantity"),
        ("1_000", "not a quantity"),
        ("\u0665", "not a quantity"),  # an Arabic-Indic five: a digit to Python, not to us
        ("1e31", "exponent out of range"),
        ("1e-99", "exponent out of range"),
        ("10E", "too large"),
        ("9Ei", "too large"),
        ("1" * 65, "too long"),
    ],
)
def test_parse_bytes_invalid(text: str, reason: str) -> None:
    with pytest.raises(QuantityError) as caught:
        parse_bytes(text)
    assert reason in str(caught.value)
    if text.strip() and len(text) < 65:
        assert repr(text) in str(caught.value) or f"'{text}'" in str(caught.value)


def test_quantity_error_is_a_value_error_with_examples() -> None:
    with pytest.raises(ValueError, match=r"^'512Mx' is not a quantity \(examples: 512Mi, 2G"):
        parse_bytes("512Mx")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2", 2.0),
        ("0.5", 0.5),
        ("500m", 0.5),
        ("1500m", 1.5),
        ("1m", 0.001),
        ("0", 0.0),
        ("0m", 0.0),
        (".25", 0.25),
        (" 4 ", 4.0),
    ],
)
def test_parse_cpu_valid(text: str, expected: float) -> None:
    assert parse_cpu(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("m", "not a number of cores"),
        ("-1", "negative"),
        ("-500m", "negative"),
        ("2 cores", "not a number of cores"),
        ("1e3", "not a number of cores"),
        ("2Gi", "not a number of cores"),
        ("500M", "not a number of cores"),
        ("nan", "not a number of cores"),
    ],
)
def test_parse_cpu_invalid(text: str, reason: str) -> None:
    with pytest.raises(QuantityError, match=reason):
        parse_cpu(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("14d", 14 * 86400),
        ("36h", 36 * 3600),
        ("90m", 5400),
        ("3600s", 3600),
        ("2w", 14 * 86400),
        ("3600", 3600),
        ("0.5", 0.5),
        ("1d12h", 36 * 3600),
        ("1w2d3h4m5s", 7 * 86400 + 2 * 86400 + 3 * 3600 + 4 * 60 + 5),
        ("1.5h", 5400),
        ("1h30m", 5400),
    ],
)
def test_parse_duration_valid(text: str, expected: float) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("0", "more than 0"),
        ("0s", "more than 0"),
        ("0h0m", "more than 0"),
        ("-1h", "not a duration"),
        ("12h1d", "not a duration"),  # out of order
        ("1h1h", "not a duration"),  # twice
        ("1ms", "not a duration"),
        ("1y", "not a duration"),
        ("d", "not a duration"),
        ("1d 12h", "not a duration"),
        ("1D", "not a duration"),
    ],
)
def test_parse_duration_invalid(text: str, reason: str) -> None:
    with pytest.raises(QuantityError, match=reason):
        parse_duration(text)


def test_parse_ratio() -> None:
    assert parse_ratio("4") == 4.0
    assert parse_ratio("1.5") == 1.5
    for text in ("0", "-1", "4x", "1e3", "1Gi", ""):
        with pytest.raises(QuantityError):
            parse_ratio(text)


def test_parse_resources_capacity() -> None:
    parsed = parse_resources("cpu=4,memory=8Gi,disk=100G", option="--capacity", kind="capacity")
    assert parsed == PartialResources(cpu=4.0, memory=8 * GIB, disk=100e9)


def test_parse_resources_leaves_out_what_is_not_given_and_allows_blanks() -> None:
    parsed = parse_resources(" memory = 1Gi ", option="--capacity", kind="capacity")
    assert parsed == PartialResources(cpu=None, memory=float(GIB), disk=None)
    parsed = parse_resources("disk=10Gi, cpu=500m", option="--capacity", kind="capacity")
    assert parsed == PartialResources(cpu=0.5, memory=None, disk=10.0 * GIB)


def test_parse_resources_reserved_allows_zero_capacity_does_not() -> None:
    reserved = parse_resources("cpu=0,memory=0,disk=0", option="--reserved", kind="reserved")
    assert reserved == PartialResources(cpu=0.0, memory=0.0, disk=0.0)
    with pytest.raises(QuantityError, match=r"^--capacity: memory: '0' must be more than 0$"):
        parse_resources("cpu=1,memory=0", option="--capacity", kind="capacity")
    with pytest.raises(QuantityError, match=r"^--capacity: cpu: '0m' must be more than 0$"):
        parse_resources("cpu=0m", option="--capacity", kind="capacity")


def test_parse_resources_ratio_takes_plain_numbers() -> None:
    ratio = parse_resources("cpu=16,memory=1.5,disk=1", option="--ratio", kind="ratio")
    assert ratio == PartialResources(cpu=16.0, memory=1.5, disk=1.0)
    with pytest.raises(QuantityError, match=r"^--ratio: memory: '1Gi' is not a ratio"):
        parse_resources("memory=1Gi", option="--ratio", kind="ratio")
    with pytest.raises(QuantityError, match=r"^--ratio: cpu: '0' must be more than 0$"):
        parse_resources("cpu=0", option="--ratio", kind="ratio")
    with pytest.raises(QuantityError, match=r"^--ratio: cpu: '500m' is not a ratio"):
        parse_resources("cpu=500m", option="--ratio", kind="ratio")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gpu=1", "--capacity: unknown key 'gpu' in 'gpu=1' (known: cpu, memory, disk)"),
        ("cpu=4,cpu=2", "--capacity: cpu: given twice in 'cpu=4,cpu=2'"),
        ("cpu=4,memory", "--capacity: 'memory' has no '='"),
        ("memory=", "--capacity: memory: no value after '='"),
        ("cpu=4,", "--capacity: an empty entry in 'cpu=4,'"),
        ("", "--capacity: nothing given"),
        ("memory=512Mx", "--capacity: memory: '512Mx' is not a quantity (examples: 512Mi"),
        ("disk=-1G", "--capacity: disk: '-1G' is negative"),
        ("cpu=two", "--capacity: cpu: 'two' is not a number of cores"),
        ("image=1Gi", "--capacity: unknown key 'image'"),
    ],
)
def test_parse_resources_errors_name_option_key_and_text(text: str, message: str) -> None:
    with pytest.raises(QuantityError) as caught:
        parse_resources(text, option="--capacity", kind="capacity")
    assert str(caught.value).startswith(message)


def test_errors_keep_their_parts() -> None:
    with pytest.raises(QuantityError) as caught:
        parse_resources("memory=1x", option="--reserved", kind="reserved")
    assert caught.value.option == "--reserved"
    assert caught.value.key == "memory"
    assert caught.value.problem.startswith("'1x' is not a quantity")


def test_parse_profile_without_a_name_is_named_by_its_canonical_text() -> None:
    profile = parse_profile("disk=2Gi, memory=512Mi,cpu=0.5")
    assert profile.name == "cpu=0.5,memory=512Mi,disk=2Gi"
    assert profile.demand == Resources(cpu=0.5, memory=512.0 * MIB, disk=2.0 * GIB)
    assert profile.allocation == profile.demand
    assert profile.origin == "given"
    assert profile.image_bytes == 0.0
    assert profile.vcpus is None


def test_parse_profile_with_a_name_image_and_vcpus() -> None:
    profile = parse_profile("web-1.v2_a=memory=1Gi,image=50M,vcpus=2")
    assert profile.name == "web-1.v2_a"
    assert profile.demand == Resources(cpu=0.0, memory=float(GIB), disk=0.0)
    assert profile.allocation == profile.demand
    assert profile.image_bytes == 50e6
    assert profile.vcpus == 2


def test_parse_profile_keeps_the_spelling_of_values_in_its_name() -> None:
    profile = parse_profile("vcpus=2,image=50MB,cpu=500m")
    assert profile.name == "cpu=500m,image=50MB,vcpus=2"
    assert profile.demand.cpu == 0.5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("memory=512Mx", "--profile: memory: '512Mx' is not a quantity"),
        ("cpu=1,vcpus=0", "--profile: vcpus: '0' is not a whole number of vCPUs"),
        ("cpu=1,vcpus=1.5", "--profile: vcpus: '1.5' is not a whole number of vCPUs"),
        ("image=1Gi,vcpus=2", "--profile: 'image=1Gi,vcpus=2' gives none of cpu, memory, disk"),
        ("web=1", "--profile: unknown key 'web' in 'web=1'"),
        ("my web=cpu=1", "--profile: the name 'my web' may only hold"),
        ("=cpu=1", "--profile: the name '' may only hold"),
        ("web=gpu=1", "--profile: unknown key 'gpu'"),
        ("web=cpu=1,cpu=2", "--profile: cpu: given twice"),
        ("cpu=cpu=1", "--profile: cpu: 'cpu=1' is not a number of cores"),
        ("", "--profile: nothing given"),
    ],
)
def test_parse_profile_errors(text: str, message: str) -> None:
    with pytest.raises(QuantityError) as caught:
        parse_profile(text)
    assert str(caught.value).startswith(message)


def test_parse_profile_names_the_option_it_was_given() -> None:
    with pytest.raises(QuantityError, match=r"^plan_profiles: memory: "):
        parse_profile("memory=lots", option="plan_profiles")


@pytest.mark.parametrize(
    ("value", "resource", "expected"),
    [
        (0.5, Resource.CPU, "0.5"),
        (2.0, Resource.CPU, "2"),
        (0.125, Resource.CPU, "0.125"),
        (1e-5, Resource.CPU, "0.00001"),
        (0.0, Resource.MEMORY, "0"),
        (100.0, Resource.DISK, "100"),
        (536_870_912.0, Resource.MEMORY, "512Mi"),
        (1_610_612_736.0, Resource.MEMORY, "1.5Gi"),
        (1024.0, Resource.MEMORY, "1Ki"),
        (2e9, Resource.DISK, "2G"),
        (1000.0, Resource.DISK, "1k"),
        (10_000.0 * MIB, Resource.MEMORY, "10000Mi"),
        (8.0 * 2**60, Resource.MEMORY, "8Ei"),
        (12_345_000.0, Resource.DISK, "12345k"),
        (1025.0, Resource.DISK, "1.025k"),
        (123_456_789.0, Resource.DISK, "117.7MiB"),
        (617_401_548.8, Resource.MEMORY, "588.8MiB"),
    ],
)
def test_format_quantity(value: float, resource: Resource, expected: str) -> None:
    assert format_quantity(value, resource) == expected


@given(
    st.integers(min_value=0, max_value=2**20),
    st.sampled_from(["", "Ki", "Mi", "Gi", "Ti"]),
)
def test_binary_quantities_round_trip(number: int, suffix: str) -> None:
    value = parse_bytes(f"{number}{suffix}")
    assert parse_bytes(format_quantity(value, Resource.MEMORY)) == value


@given(st.integers(min_value=1, max_value=2**12), st.sampled_from(["Ki", "Mi", "Gi", "Ti"]))
def test_fractional_binary_quantities_round_trip(quarters: int, suffix: str) -> None:
    value = parse_bytes(f"{quarters / 4}{suffix}")
    assert parse_bytes(format_quantity(value, Resource.DISK)) == value


@given(st.integers(min_value=0, max_value=10**6))
def test_millicores_round_trip(millicores: int) -> None:
    value = parse_cpu(f"{millicores}m")
    assert parse_cpu(format_quantity(value, Resource.CPU)) == value


PARSERS: list[Callable[[str], float]] = [parse_bytes, parse_cpu, parse_duration, parse_ratio]


@pytest.mark.parametrize("parser", PARSERS)
@given(text=st.text(max_size=80) | st.text(alphabet=QUANTITY_ALPHABET, max_size=16))
def test_parsers_give_a_finite_number_or_a_quantity_error(
    parser: Callable[[str], float], text: str
) -> None:
    try:
        value = parser(text)
    except QuantityError:
        return
    assert math.isfinite(value)
    assert value >= 0


@given(text=st.text(max_size=80) | st.text(alphabet=QUANTITY_ALPHABET, max_size=40))
def test_resources_and_profiles_give_a_value_or_a_quantity_error(text: str) -> None:
    kinds: tuple[Literal["capacity", "reserved", "ratio"], ...] = ("capacity", "reserved", "ratio")
    for kind in kinds:
        try:
            parsed = parse_resources(text, option="--x", kind=kind)
        except QuantityError as error:
            assert str(error).startswith("--x: ")
            continue
        for resource in (Resource.CPU, Resource.MEMORY, Resource.DISK):
            value = parsed.get(resource)
            assert value is None or (math.isfinite(value) and value >= 0)
    try:
        profile = parse_profile(text)
    except QuantityError as error:
        assert str(error).startswith("--profile: ")
        return
    assert all(math.isfinite(v) and v >= 0 for v in (*_values(profile.demand), profile.image_bytes))


@given(
    st.lists(
        st.tuples(st.sampled_from(["cpu", "memory", "disk"]), st.integers(1, 10**6)),
        min_size=1,
        max_size=3,
        unique_by=lambda pair: pair[0],
    )
)
def test_well_formed_profiles_always_parse(pairs: list[tuple[str, int]]) -> None:
    text = ",".join(f"{key}={number}" for key, number in pairs)
    profile = parse_profile(text)
    for key, number in pairs:
        assert getattr(profile.demand, key) == number


def _values(resources: Resources) -> tuple[float, float, float]:
    return (resources.cpu, resources.memory, resources.disk)
