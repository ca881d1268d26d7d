"""Benchmark densityd's libvirt side against Debian's ``prometheus-libvirt-exporter``.

With N running VMs (``--vms``, default 8) it measures, in one run and over the same VMs:

- densityd's libvirt pass: ``LibvirtSource(uri).sample()`` timed in-process. Connecting is
  timed apart (once per daemon lifetime); the first (cold) pass reads every domain's XML; the
  steady pass is the median of ``--repeat`` passes after it. For scale, the bare
  ``getAllDomainStats`` call that the pass is built on is timed too, on a connection of its own
  right after each steady pass, with libvirtd's own CPU time; then each stats group alone
  (where libvirtd's time goes).
  The script fails unless a pass saw every bench VM running with CPU and memory.
- ``/metrics`` of the running daemon (``python -m densityd run --interval 5 --no-docker``),
  which serves its latest snapshot, against ``prometheus-libvirt-exporter``, which asks
  libvirtd at every scrape: both run side by side on loopback ports against the same URI;
  once both list every bench VM, each is scraped ``--scrapes`` times, alternately, with a
  fresh connection each and no gzip (p50/p99/max latency, response size), and then the
  resident set (``VmRSS``) of both processes is read.
- a frozen libvirtd: libvirtd (PID from ``/run/libvirtd.pid``) is stopped with SIGSTOP for
  ``--freeze`` seconds (10) while both are scraped concurrently with a 5 s client timeout
  (densityd every 20 ms at most, the exporter back to back); densityd should keep answering
  from its snapshot, the exporter should hang. A control window of the same length and the
  same scraping, with libvirtd running, comes just before it. libvirtd is always resumed: in a
  ``finally`` block, and by a watchdog process that sends SIGCONT on its own should this script
  die meanwhile. Then how long each takes to answer in full again is measured.
- densityd's memory with ``--no-libvirt --no-docker``, against its memory with libvirt on (RSS,
  split into anonymous and file-backed, and PSS): what loading libvirt costs the daemon; and a
  fresh interpreter's RSS step by step (densityd's imports, ``import libvirt``, a connection).

The targets (densityd's scrape latency at or below the exporter's, and unaffected by a frozen
libvirtd; the libvirt pass over 8 VMs under 50 ms) are measured and reported, never asserted.

Run it as root on a host with a local libvirtd and QEMU (DESIGN §4)::

    /opt/densityd-venv/bin/python bench/libvirt_scrape.py --vms 8 --json /tmp/libvirt.json

The VMs are named ``densityd-bench-<i>``: TCG (``<domain type='qemu'>``), 128 MiB, 1 vCPU, a
virtio balloon, no graphics, and a 64 MiB raw disk made with ``truncate`` in a fresh 0755
directory under /tmp (QEMU runs as libvirt-qemu and must traverse it). With no OS they idle in
the BIOS as real running domains with real stats. Only domains named
``densityd-bench-<digits>`` are ever destroyed or undefined (other domains on the host are left
alone, though densityd and the exporter see them too): at the end, also on Ctrl-C or SIGTERM,
unless ``--keep``. Bench VMs still running from an earlier ``--keep`` run are reused (defining a
domain took about 40 s here, libvirtd re-probing QEMU each time); any other bench domain is
removed first; ``--remove`` removes them all and exits. Other options: ``--repeat`` (steady
passes, 20), ``--freeze`` (0 skips it), ``--exporter`` (the peer's executable). Check with
``ruff check bench`` and ``mypy --strict bench/libvirt_scrape.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import libvirt
from _common import BenchError, loadavg, run_benchmark
from _libvirt_exporters import (
    BaselineRss,
    ScrapeSeries,
    baseline_rss,
    densityd_exporter,
    densityd_source,
    import_cost,
    libvirt_exporter,
    scrape_alternately,
)
from _libvirt_freeze import FREEZE_MAX_S, FreezeResult, freeze_libvirtd, is_local
from _libvirt_pass import time_libvirt_pass
from _libvirt_report import machine, mib, print_report, targets
from _libvirt_vms import (
    DISK_DIR_PREFIX,
    VM_DISK_BYTES,
    VM_MEMORY_MIB,
    remove_bench_vms,
    start_bench_vms,
)

EXPORTER = "/usr/bin/prometheus-libvirt-exporter"


# -- main --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's command line."""
    parser = argparse.ArgumentParser(
        description="densityd's libvirt pass, and its /metrics against "
        "prometheus-libvirt-exporter over the same VMs (latency, RSS, a frozen libvirtd)."
    )
    parser.add_argument("--vms", type=int, default=8, help="running bench VMs (8)")
    parser.add_argument("--scrapes", type=int, default=200, help="scrapes of each exporter (200)")
    parser.add_argument("--repeat", type=int, default=20, help="steady densityd passes (20)")
    parser.add_argument("--uri", default="qemu:///system", help="libvirt URI (qemu:///system)")
    parser.add_argument(
        "--freeze",
        type=float,
        default=10.0,
        help=f"seconds to keep libvirtd stopped (10, at most {FREEZE_MAX_S:g}; 0 skips it)",
    )
    parser.add_argument("--exporter", default=EXPORTER, help=f"the peer exporter ({EXPORTER})")
    parser.add_argument("--keep", action="store_true", help="leave the bench VMs running")
    parser.add_argument(
        "--remove", action="store_true", help="only remove the bench VMs (after --keep), and exit"
    )
    parser.add_argument("--json", metavar="FILE", type=Path, help="also write the results here")
    return parser


def run(args: argparse.Namespace, disk_dir: Path) -> dict[str, Any]:
    """Start the VMs, measure everything; the JSON document."""
    started = datetime.now(UTC)
    if not os.access(args.exporter, os.X_OK):
        raise BenchError(f"no {args.exporter}; apt-get install prometheus-libvirt-exporter")
    host = machine(args.uri, args.exporter)
    print(
        f"machine: {host['cpus']} cores ({host['cpu_model']}), kernel {host['kernel']}, "
        f"libvirt {host['libvirt']} ({host['hypervisor']}, {args.uri}), densityd "
        f"{host['densityd']}, prometheus-libvirt-exporter {host['exporter_package']}; "
        f"load average {' '.join(host['loadavg_at_start'])}"
    )
    setup = start_bench_vms(args.uri, args.vms, disk_dir)
    names = set(setup.names)
    print(
        f"{args.vms} bench VMs running: {len(setup.reused)} reused from an earlier --keep run, "
        f"{len(setup.define_s)} defined and started (disks in {disk_dir})"
        + (f"; removed first: {', '.join(setup.removed)}" if setup.removed else "")
    )
    time.sleep(5 if setup.define_s else 1)  # let new QEMU processes get past their start

    timing = time_libvirt_pass(args.uri, names, args.repeat)
    print(
        f"densityd libvirt pass: cold {timing.cold_s * 1e3:.1f} ms, steady median "
        f"{timing.steady_median_s * 1e3:.2f} ms over {timing.seen} domains "
        f"(not ours: {', '.join(timing.others) or 'none'})"
    )

    series: list[ScrapeSeries] = []
    stopped: dict[str, tuple[int | None, float]] = {}
    freeze: FreezeResult | None = None
    baseline: BaselineRss | None = None
    pass_in_daemon: float | None = None
    with tempfile.TemporaryDirectory(prefix="densityd-bench-logs-") as logs:
        log_dir = Path(logs)
        baseline = baseline_rss(log_dir, args.scrapes)
        print(f"densityd --no-libvirt --no-docker: RSS {mib(baseline.memory.rss)} MiB")

        ours = densityd_exporter(log_dir, "densityd", "--no-docker", "--libvirt-uri", args.uri)
        theirs = libvirt_exporter(log_dir, args.exporter, args.uri)
        try:
            ours.start()
            theirs.start()
            ready = [e.wait_until_listed(names, timeout=60) for e in (ours, theirs)]
            print(f"both list all {args.vms} bench VMs; scraping each {args.scrapes} times")
            series, texts = scrape_alternately([ours, theirs], ready, names, args.scrapes)
            pass_in_daemon = densityd_source(
                "libvirt", "densityd_source_duration_seconds", texts[0]
            )
            if args.freeze <= 0:
                print("not freezing libvirtd (--freeze 0)")
            elif not is_local(args.uri):
                print(f"not freezing libvirtd: {args.uri} is not this host's")
            else:
                freeze = freeze_libvirtd(args.freeze, ours, theirs, names)
        except BenchError:
            for exporter in (ours, theirs):
                print(
                    f"{exporter.name} log (last lines):\n  {exporter.log_tail()}", file=sys.stderr
                )
            raise
        finally:
            for exporter in (ours, theirs):
                stopped[exporter.name] = exporter.stop()
                if stopped[exporter.name][0] is None and exporter.process is not None:
                    print(f"{exporter.name} did not exit within 15 s of SIGTERM (killed)")

    imports = import_cost(args.uri)
    print_report(timing, series, freeze, baseline, pass_in_daemon, imports)
    return {
        "schema": "densityd.bench.libvirt_scrape/v1",
        "date": started.isoformat(timespec="seconds"),
        "command": [Path(sys.argv[0]).as_posix(), *sys.argv[1:]],
        "machine": host,
        "vms": args.vms,
        "vm_setup": asdict(setup),
        "vm": {
            "memory_mib": VM_MEMORY_MIB,
            "vcpus": 1,
            "disk_bytes": VM_DISK_BYTES,
            "type": "qemu",
        },
        "scrapes": args.scrapes,
        "repeat": args.repeat,
        "pass": timing.summary(),
        "pass_in_daemon_s": pass_in_daemon,
        "scrape": [s.summary() for s in series],
        "freeze": freeze.summary() if freeze else None,
        "stopped": {name: {"exit_code": c, "seconds": t} for name, (c, t) in stopped.items()},
        "rss_without_libvirt": asdict(baseline) if baseline else None,
        "rss_steps_fresh_interpreter": imports,
        "targets": targets(timing, series, freeze),
        "loadavg_at_end": loadavg(),
    }


def _quiet(_context: object, _error: object) -> None:
    """An error handler that prints nothing."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; exit 1 when it could not measure what it meant to."""
    args = build_parser().parse_args(argv)
    if min(args.vms, args.scrapes, args.repeat) < 1 or not 0 <= args.freeze <= FREEZE_MAX_S:
        print(
            f"--vms, --scrapes, --repeat: at least 1; --freeze: 0 to {FREEZE_MAX_S:g}",
            file=sys.stderr,
        )
        return 2
    # libvirt prints every error to stderr by default; they reach us as exceptions anyway.
    libvirt.registerErrorHandler(_quiet, None)
    if args.remove:
        try:
            print(f"removed {remove_bench_vms(args.uri)} bench VMs")
        except BenchError as exc:
            print(f"cleanup failed: {exc}", file=sys.stderr)
            return 1
        return 0
    disk_dir = Path(tempfile.mkdtemp(prefix=DISK_DIR_PREFIX))
    disk_dir.chmod(0o755)  # QEMU runs as libvirt-qemu and must traverse it

    def cleanup() -> None:
        if args.keep:
            print("keeping the bench VMs (--keep)")
            with suppress(OSError):  # only if every VM was reused: nothing in it
                disk_dir.rmdir()
            return
        try:
            print(f"removed {remove_bench_vms(args.uri)} bench VMs")
        finally:
            for image in disk_dir.glob("*.raw"):
                image.unlink()
            with suppress(OSError):
                disk_dir.rmdir()

    return run_benchmark(lambda: run(args, disk_dir), args.json, cleanup)


if __name__ == "__main__":
    raise SystemExit(main())
