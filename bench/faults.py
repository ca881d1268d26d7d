"""Benchmark what a user sees while a backend restarts, and scrapes under idle connections.

In one run, with ``--vms`` running bench VMs (2) and ``--containers`` containers (3) in a
private dockerd of the benchmark's own (so that restarting it touches nobody else's), and
one ``densityd run --interval 2`` over both beside Debian's ``prometheus-libvirt-exporter``:

- **libvirtd restarted** ``--restarts`` times (3): SIGTERM, ``--down`` seconds (2), start, as
  the issue that asked for this did. Both exporters are scraped every 200 ms meanwhile: for
  densityd, each source's data age (scrape time minus its
  ``densityd_source_last_success_timestamp_seconds``), and how long after libvirtd answered
  again its VMs were back; for both, scrape latency and failures.
- **the private dockerd restarted** the same way (``--live-restore``: its containers
  survive): each other source's data age, and how long until Docker's containers are back.
- **idle connections**: ``--connections`` (500) connections opened and left idle (half a
  request line each) against each exporter, then ``--scrapes`` (50) scrapes of each: latency,
  failures, and the process's thread count.

Targets (reported, never asserted): no other source's data older than two intervals during a
restart; the restarted source back within two intervals of its backend answering; a scrape
within a second with 500 idle connections held open.

Run it as root on a host with libvirtd, QEMU and dockerd (DESIGN §4)::

    /opt/densityd-venv/bin/python bench/faults.py --json /tmp/faults.json

Only domains named ``densityd-bench-<digits>`` are destroyed, and only the private dockerd is
restarted; the machine's libvirtd is restarted and left running.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import libvirt
from _common import (
    BenchError,
    clean_env,
    free_port,
    machine_basics,
    print_targets,
    progress,
    run_benchmark,
    scrape,
)
from _fault_connections import idle_connection_latency
from _fault_restarts import Libvirtd, PrivateEngine, Watch, wait_until
from _libvirt_exporters import samples
from _libvirt_vms import remove_bench_vms, start_bench_vms

DISK_DIR_PREFIX = "densityd-bench-faults-"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("--down", type=float, default=2.0, help="seconds a backend stays down")
    parser.add_argument("--vms", type=int, default=2)
    parser.add_argument("--containers", type=int, default=3)
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--scrapes", type=int, default=50)
    parser.add_argument("--uri", default="qemu:///system")
    parser.add_argument("--exporter", default="/usr/bin/prometheus-libvirt-exporter")
    parser.add_argument("--json", type=Path)
    return parser


def _up_with(port: int, source: str, check: Callable[[str], bool]) -> bool:
    """Whether densityd on ``port`` says ``source`` is up and its scrape passes ``check``."""
    try:
        _elapsed, body = scrape(port, timeout=5)
    except (OSError, BenchError):
        return False
    text = body.decode(errors="replace")
    up = [v for labels, v in samples(text, "densityd_source_up") if labels["source"] == source]
    return up == ["1.0"] and check(text)


def _lists(metric: str, ids: set[str]) -> Callable[[str], bool]:
    return lambda text: ids <= {labels.get("id") for labels, _ in samples(text, metric)}


def _restarts(
    name: str,
    restart: Callable[[float], float],
    back: Callable[[], bool],
    watches: Sequence[Watch],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Restart one backend ``--restarts`` times while ``watches`` scrape; what they saw."""
    for watch in watches:
        watch.start()
    recoveries = []
    try:
        for attempt in range(1, args.restarts + 1):
            progress(f"{name}: restart {attempt} of {args.restarts}")
            restart(args.down)  # returns once the backend answers again
            recoveries.append(wait_until(back, 60, f"densityd seeing {name} again"))
    finally:
        for watch in watches:
            watch.stop()
    return {
        "recovery_after_answering_s": [round(r, 2) for r in recoveries],
        "answered_to_back_max_s": round(max(recoveries), 2),
        "watches": {watch.name: watch.summary() for watch in watches},
    }


def _start(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=clean_env())


def run(args: argparse.Namespace, work: Path, engine: PrivateEngine) -> dict[str, Any]:
    progress(f"starting {args.vms} bench VMs and a private dockerd with {args.containers}")
    vms = start_bench_vms(args.uri, args.vms, work)
    with libvirt.openReadOnly(args.uri) as conn:
        vm_ids = {conn.lookupByName(name).UUIDString() for name in vms.names}
    engine.start()
    engine.import_tiny(work)
    container_ids = {
        engine.cli("run", "-d", "--label", "densityd.bench=1", "tiny:latest", "sleep", "3600")
        for _ in range(args.containers)
    }
    port, peer_port = free_port(), free_port()
    densityd = _start(
        [
            sys.executable, "-m", "densityd", "run",
            "--listen-address", f"127.0.0.1:{port}", "--interval", f"{args.interval:g}",
            "--docker-host", engine.socket, "--libvirt-uri", args.uri,
            "--state-dir", str(work / "state"),
        ],
        work / "densityd.log",
    )  # fmt: skip
    peer = _start(
        [args.exporter, f"--web.listen-address=127.0.0.1:{peer_port}", f"--libvirt.uri={args.uri}"],
        work / "exporter.log",
    )
    try:
        vms_listed = _lists("densityd_workload_memory_bytes", vm_ids)
        containers_listed = _lists("densityd_workload_memory_bytes", container_ids)
        wait_until(lambda: _up_with(port, "libvirt", vms_listed), 60, "densityd listing the VMs")
        wait_until(
            lambda: _up_with(port, "docker", containers_listed), 60, "densityd listing containers"
        )
        libvirtd = Libvirtd(args.uri, work / "libvirtd.log")
        try:
            libvirt_result = _restarts(
                "libvirtd",
                libvirtd.restart,
                lambda: _up_with(port, "libvirt", vms_listed),
                [Watch("densityd", port), Watch("prometheus-libvirt-exporter", peer_port)],
                args,
            )
        finally:
            libvirtd.ensure_running()
        docker_result = _restarts(
            "dockerd",
            engine.restart,
            lambda: _up_with(port, "docker", containers_listed),
            [Watch("densityd", port)],
            args,
        )
        progress(f"{args.connections} idle connections against each exporter")
        idle = {
            name: idle_connection_latency(
                f"http://127.0.0.1:{p}/metrics", args.connections, args.scrapes, pid=pid
            )
            for name, p, pid in (
                ("densityd", port, densityd.pid),
                ("prometheus-libvirt-exporter", peer_port, peer.pid),
            )
        }
    finally:
        for process in (densityd, peer):
            process.terminate()
            with suppress(subprocess.TimeoutExpired):
                process.wait(15)
            if process.poll() is None:
                process.kill()
    document = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_basics(),
        "interval_s": args.interval,
        "down_s": args.down,
        "restarts": args.restarts,
        "libvirtd_restart": libvirt_result,
        "dockerd_restart": docker_result,
        "idle_connections": {"connections": args.connections, **idle},
    }
    report(document)
    return document


def report(document: dict[str, Any]) -> None:
    """Print the side-by-side tables and the targets."""
    interval = document["interval_s"]
    print(f"\nfaults at --interval {interval:g}, each backend down {document['down_s']:g} s, "
          f"{document['restarts']} restarts")  # fmt: skip
    print(f"\n{'worst data age (s)':<34}{'docker':>9}{'libvirt':>9}{'host':>9}")
    for fault in ("libvirtd_restart", "dockerd_restart"):
        ages = document[fault]["watches"]["densityd"]["worst_data_age_s"]
        row = "".join(f"{ages.get(s, float('nan')):>9.2f}" for s in ("docker", "libvirt", "host"))
        print(f"{'densityd, ' + fault.replace('_', ' '):<34}{row}")
    print(f"\n{'scrapes during the libvirtd restarts':<40}{'p50 ms':>9}{'max ms':>9}{'failed':>8}")
    for name, watch in document["libvirtd_restart"]["watches"].items():
        latency = watch["latency"] or {}
        print(f"{name:<40}{latency.get('p50_ms', float('nan')):>9.1f}"
              f"{latency.get('max_ms', float('nan')):>9.1f}{watch['failures']:>8}")  # fmt: skip
    idle = document["idle_connections"]
    print(f"\n{'scrape with ' + str(idle['connections']) + ' idle connections':<40}"
          f"{'p50 ms':>9}{'max ms':>9}{'failed':>8}{'threads':>9}")  # fmt: skip
    for name in ("densityd", "prometheus-libvirt-exporter"):
        side = idle[name]
        print(f"{name:<40}{side.get('p50_s', float('nan')) * 1000:>9.1f}"
              f"{side.get('max_s', float('nan')) * 1000:>9.1f}{side.get('errors', 0):>8.0f}"
              f"{side.get('threads', float('nan')):>9.0f}")  # fmt: skip
    libvirt_ages = document["libvirtd_restart"]["watches"]["densityd"]["worst_data_age_s"]
    docker_ages = document["dockerd_restart"]["watches"]["densityd"]["worst_data_age_s"]
    others = [libvirt_ages.get("docker"), libvirt_ages.get("host"),
              docker_ages.get("libvirt"), docker_ages.get("host")]  # fmt: skip
    back = [document[f]["answered_to_back_max_s"] for f in ("libvirtd_restart", "dockerd_restart")]
    scrape_max = idle["densityd"].get("max_s")
    print("\ntargets:")
    print_targets(
        [
            {
                "target": f"other sources' data at most {2 * interval:g} s old during a restart",
                "met": None if None in others else max(others) <= 2 * interval,  # type: ignore[type-var]
                "measured": f"worst {max(o for o in others if o is not None):.2f} s",
            },
            {
                "target": f"restarted source back within {2 * interval:g} s of answering",
                "met": max(back) <= 2 * interval,
                "measured": f"libvirt {back[0]:.2f} s, docker {back[1]:.2f} s (worst of each)",
            },
            {
                "target": "a scrape within 1 s with the idle connections held open",
                "met": None if scrape_max is None else scrape_max <= 1.0,
                "measured": f"max {scrape_max * 1000:.1f} ms, "
                f"{idle['densityd'].get('errors', 0):.0f} failed"
                if scrape_max is not None
                else "no scrape",
            },
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; exit 1 when it could not measure what it meant to."""
    args = build_parser().parse_args(argv)
    if min(args.restarts, args.vms, args.containers, args.connections, args.scrapes) < 1:
        print("--restarts, --vms, --containers, --connections, --scrapes: at least 1",
              file=sys.stderr)  # fmt: skip
        return 2
    # Short paths: a Unix socket's path has a length limit.
    work = Path(tempfile.mkdtemp(prefix=DISK_DIR_PREFIX, dir="/tmp"))
    work.chmod(0o755)  # QEMU runs as libvirt-qemu and must traverse it
    engine = PrivateEngine(work / "engine")
    (work / "engine").mkdir()

    def cleanup() -> None:
        print(f"removed {remove_bench_vms(args.uri)} bench VMs")
        if engine.answers():
            ids = engine.cli("ps", "-aq").split()
            if ids:
                engine.cli("rm", "-f", *ids, check=False)
        engine.stop()
        shutil.rmtree(work, ignore_errors=True)

    started = time.monotonic()
    status = run_benchmark(lambda: run(args, work, engine), args.json, cleanup)
    progress(f"took {time.monotonic() - started:.0f} s")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
