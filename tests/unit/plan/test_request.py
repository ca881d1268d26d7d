"""Packing several shapes: the request from flags and YAML, the packing, its document and table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from densityd.model import WorkloadKind
from densityd.plan.command_answer import pack_request
from densityd.plan.core.fleet import host_use
from densityd.plan.core.model import (
    GIB,
    MIB,
    HostCapacity,
    PlanInputs,
    PlanSettings,
    Resources,
    View,
)
from densityd.plan.core.quantity import QuantityError, parse_profile
from densityd.plan.output.packing import packing_document, packing_table
from densityd.plan.request import (
    PackingRequestError,
    packing_request,
    parse_count,
    parse_new_host,
    read_packing_file,
)
from densityd.units import WIDTH

VIEWS = (View.ALLOCATION, View.DEMAND)
SETTINGS = PlanSettings(container_shim_bytes=0.0)


def test_counts_and_new_hosts_parse() -> None:
    assert parse_count(" web = 40 ") == ("web", 40)
    for bad in ("web", "=3", "web=-1", "web=2.5", "web=x"):
        with pytest.raises(PackingRequestError, match="--count"):
            parse_count(bad)
    assert parse_new_host("cpu=16,memory=64Gi,disk=1Ti") == Resources(16, 64 * GIB, 1024 * GIB)
    with pytest.raises(QuantityError, match="--new-host: 'cpu=1,memory=1Gi' leaves out disk"):
        parse_new_host("cpu=1,memory=1Gi")


def test_a_yaml_file_gives_profiles_counts_kind_and_new_host(tmp_path: Path) -> None:
    path = tmp_path / "pack.yaml"
    path.write_text(
        "kind: vm\n"
        "new_host: {cpu: 16, memory: 64Gi, disk: 1Ti}\n"
        "profiles:\n"
        "  web: {cpu: 0.5, memory: 512Mi, count: 40}\n"
        "  db:  {cpu: 2, memory: 8Gi, disk: 20Gi, count: 5}\n"
    )
    request = packing_request([], [], packing_file=str(path))
    assert request is not None
    assert request.kind is WorkloadKind.VM
    assert request.new_host == Resources(16, 64 * GIB, 1024 * GIB)
    assert [(p.name, n) for p, n in request.shapes] == [("web", 40), ("db", 5)]
    assert request.shapes[0][0].demand == Resources(0.5, 512 * MIB, 0)
    # Flags add profiles and win over the file's kind and new host.
    more = packing_request(
        [parse_profile("cache=memory=1Gi")],
        ["cache=3"],
        packing_file=str(path),
        kind="container",
        new_host="cpu=8,memory=32Gi,disk=500Gi",
    )
    assert more is not None and more.kind is WorkloadKind.CONTAINER
    assert [p.name for p, _ in more.shapes] == ["web", "db", "cache"]
    assert more.new_host == Resources(8, 32 * GIB, 500 * GIB)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("profiles: [web]", "'profiles' must map names"),
        ("profiles: {web: {cpu: 1}}", "profiles.web.count"),
        ("profiles: {web: {cpu: 1, count: -2}}", "profiles.web.count"),
        ("profiles: {web: {cpu: lots, count: 2}}", "profiles.web: cpu: 'lots'"),
        ("profiles: {web: {gpu: 1, count: 2}}", "unknown key(s) gpu"),
        ("colour: red\nprofiles: {web: {cpu: 1, count: 1}}", "unknown key(s) colour"),
        ("profiles: {web: {cpu: 1, count: 1}\n", "not valid YAML"),
    ],
)
def test_a_bad_file_is_named_with_its_key(tmp_path: Path, text: str, named: str) -> None:
    path = tmp_path / "pack.yaml"
    path.write_text(text)
    with pytest.raises((PackingRequestError, QuantityError)) as caught:
        read_packing_file(path)
    assert named in str(caught.value) and str(path) in str(caught.value)


def test_a_missing_file_is_named() -> None:
    with pytest.raises(PackingRequestError, match="cannot read"):
        read_packing_file("/nonexistent/pack.yaml")


def test_requests_need_named_profiles_with_counts() -> None:
    web = parse_profile("web=cpu=1")
    assert packing_request([web], []) is None
    with pytest.raises(PackingRequestError, match="name it"):
        packing_request([parse_profile("cpu=1")], ["cpu=1"])
    with pytest.raises(PackingRequestError, match="no --count web=N"):
        packing_request([web, parse_profile("db=cpu=2")], ["db=1"])
    with pytest.raises(PackingRequestError, match="given twice"):
        packing_request([web, web], ["web=1"])
    with pytest.raises(PackingRequestError, match="kind"):
        packing_request([web], ["web=1"], kind="pod")


def _host(name: str, memory_gib: float) -> PlanInputs:
    capacity = Resources(cpu=8, memory=memory_gib * GIB, disk=100 * GIB)
    return PlanInputs(timestamp=0.0, host=HostCapacity(total=capacity, used=Resources()))


def test_a_packing_reports_what_goes_where_and_the_new_hosts() -> None:
    request = packing_request(
        [parse_profile("web=cpu=0.5,memory=1Gi"), parse_profile("db=cpu=2,memory=4Gi")],
        ["web=20", "db=4"],
        new_host="cpu=8,memory=16Gi,disk=100Gi",
    )
    assert request is not None
    settings = PlanSettings(container_shim_bytes=0.0, reserved=Resources(), target_fill=1.0)
    uses = [
        host_use(name, _host(name, gib), VIEWS, settings) for name, gib in (("a", 8.0), ("b", 4.0))
    ]
    result = pack_request(uses, request, VIEWS, settings)
    document = packing_document(result, request, VIEWS)
    json.dumps(document, allow_nan=False)
    shapes = {s["name"]: s for s in document["shapes"]}
    for shape in shapes.values():
        assert shape["placed"] + shape["placed_new"] + shape["unplaced"] == shape["requested"]
    # 12 GiB of hosts against 36 GiB asked: 24 GiB more, 2 new hosts of 16 GiB at least.
    placed_memory = sum(
        n * (1 if name == "web" else 4)
        for p in document["placements"]
        for name, n in p["counts"].items()
    )
    assert placed_memory <= 12
    assert document["lower_bound"] == 2
    assert document["lower_bound_resource"] in {"allocation memory", "demand memory"}
    assert document["new_hosts_needed"] == len(document["new_hosts"]) >= 2
    assert document["gap"] == document["new_hosts_needed"] - 2
    left = document["placements"][0]["left"]
    assert set(left) == {"allocation", "demand"} and left["demand"]["memory_bytes"] >= 0
    text = packing_table(document, hosts=2)
    assert "Packing as containers" in text and "new-1 (new)" in text
    assert f"lower bound 2 by {document['lower_bound_resource']}" in text
    assert max(len(line) for line in text.splitlines()) <= WIDTH


def test_without_a_new_host_the_overflow_is_not_placed() -> None:
    request = packing_request([parse_profile("db=memory=4Gi")], ["db=5"])
    assert request is not None
    uses = [host_use("a", _host("a", 8.0), VIEWS, SETTINGS)]
    document = packing_document(pack_request(uses, request, VIEWS, SETTINGS), request, VIEWS)
    (shape,) = document["shapes"]
    assert shape["unplaced"] == 5 - shape["placed"] > 0
    assert document["new_hosts_needed"] is None and document["gap"] is None
    assert "give --new-host SIZE" in packing_table(document, hosts=1)
