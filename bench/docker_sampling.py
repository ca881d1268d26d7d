"""Benchmark densityd's Docker sampling against ``docker stats --no-stream``.

For N idle containers (``--counts``, default 10, 50 and 200; the set grows in place) it
measures, in the same run and over the same containers:

- one densityd Docker pass: ``DockerSource.sample()`` timed in-process, both the first (cold)
  pass of a fresh source, which inspects every container, and the median of ``--repeat``
  steady passes (cgroup file reads, no inspects), and the cost per container;
- ``docker stats --no-stream`` over exactly the benchmark containers (their names passed on
  the command line), timed as a subprocess, median of ``--stats-repeat`` runs;
- at the largest N only: the daemon itself (``python -m densityd run``), whose ``/metrics`` is
  scraped ``--scrapes`` times with a fresh connection each (p50/p99/max latency, response
  size), and whose resident set (``VmRSS``) is read after the scrapes; it is then stopped with
  SIGTERM and must exit.

Run it as a user that can reach the Docker socket and read the cgroup tree (root here)::

    /opt/densityd-venv/bin/python bench/docker_sampling.py --counts 10,50,200 --json out.json

Containers are named ``bench-<n>``, run ``sleep 3600`` from ``--image`` (built from
busybox-static when missing, as DESIGN §4 describes), carry the label ``densityd.bench=1``,
and are removed at the end, also on Ctrl-C or SIGTERM, unless ``--keep``. Only containers
carrying that label are ever removed; other containers on the engine are left alone
(densityd still sees them, so they are counted in its per-container cost). Leftover labelled
containers from an earlier ``--keep`` run are removed at the start, so every run starts at 0.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import BenchError, loadavg, parse_counts, run_benchmark
from _docker_cli import DockerCli, bench_name, build_image, grow_to
from _docker_measure import (
    DaemonResult,
    PassResult,
    bench_daemon,
    time_densityd_pass,
    time_docker_stats,
)
from _docker_report import linear_fit, machine, print_report, targets

# -- main --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's command line."""
    parser = argparse.ArgumentParser(
        description="Time densityd's Docker pass against docker stats --no-stream, "
        "and the daemon's /metrics latency and RSS."
    )
    parser.add_argument(
        "--counts", type=parse_counts, default=[10, 50, 200], help="container counts (10,50,200)"
    )
    parser.add_argument("--repeat", type=int, default=5, help="steady densityd passes per N (5)")
    parser.add_argument(
        "--stats-repeat",
        type=int,
        default=None,
        help="docker stats runs per N (default: --repeat, at most 3: each takes seconds)",
    )
    parser.add_argument("--scrapes", type=int, default=200, help="/metrics scrapes (200)")
    parser.add_argument(
        "--interval", type=float, default=5.0, help="the daemon's --interval in seconds (5)"
    )
    parser.add_argument("--docker", default="/usr/bin/docker", help="docker client to use")
    parser.add_argument("--image", default="tiny:latest", help="image to run (tiny:latest)")
    parser.add_argument("--keep", action="store_true", help="leave the bench containers running")
    parser.add_argument("--no-daemon", action="store_true", help="skip the daemon measurements")
    parser.add_argument(
        "--daemon-arg",
        action="append",
        default=[],
        metavar="FLAG",
        help="extra flag for the daemon, repeatable (e.g. --daemon-arg=--no-libvirt)",
    )
    parser.add_argument("--json", metavar="FILE", type=Path, help="also write the results here")
    return parser


def run(args: argparse.Namespace, docker: DockerCli) -> dict[str, Any]:
    """Grow the container set through every count, measuring at each; the JSON document."""
    started = datetime.now(UTC)
    host = machine(docker)
    print(
        f"machine: {host['cpus']} cores ({host['cpu_model']}), kernel {host['kernel']}, "
        f"Docker {host['docker']} ({host['storage_driver']}, cgroup v{host['cgroup_version']} "
        f"{host['cgroup_driver']}), densityd {host['densityd']}; "
        f"load average {' '.join(host['loadavg_at_start'])}"
    )
    if not docker.has_image(args.image):
        print(f"building {args.image} from busybox-static")
        build_image(docker, args.image)
    stale = docker.remove_bench_containers()
    if stale:
        print(f"removed {stale} leftover bench containers")

    stats_repeat = args.stats_repeat or min(args.repeat, 3)
    results: list[PassResult] = []
    for count in args.counts:
        took = grow_to(docker, args.image, count)
        names = [bench_name(i) for i in range(1, count + 1)]
        print(f"N={count}: {count} bench containers running (started the new ones in {took:.1f} s)")
        time.sleep(2)  # let the engine settle after the burst of starts
        timing = time_densityd_pass(set(names), args.repeat)
        print(
            f"  densityd: cold {timing.cold_s * 1e3:.1f} ms, steady median "
            f"{statistics.median(timing.steady_s) * 1e3:.2f} ms over {timing.seen} containers "
            f"(usage from {timing.usage_from}; not ours: {', '.join(timing.others) or 'none'})"
        )
        if timing.signal_reads_s:
            signals = statistics.median(timing.signal_reads_s)
            print(
                f"  of which the starvation-signal files: {signals * 1e3:.2f} ms over "
                f"{timing.signal_containers} containers "
                f"({signals / max(timing.signal_containers, 1) * 1e6:.1f} us each, "
                f"{timing.signals_share:.1%} of the steady pass)"
            )
        stats = time_docker_stats(docker, names, stats_repeat)
        print(f"  docker stats --no-stream: median {statistics.median(stats):.2f} s")
        results.append(
            PassResult(n=count, densityd=timing, docker_stats_s=stats, start_containers_s=took)
        )

    daemon: DaemonResult | None = None
    if not args.no_daemon:
        largest = {bench_name(i) for i in range(1, args.counts[-1] + 1)}
        with tempfile.NamedTemporaryFile(prefix="densityd-bench-", suffix=".log") as log:
            log_path = Path(log.name)
            time.sleep(2)  # let the engine settle after docker stats
            print(f"starting the daemon with {len(largest)} bench containers")
            try:
                daemon = bench_daemon(
                    largest, args.scrapes, args.interval, log_path, args.daemon_arg
                )
            except BenchError:
                tail = log_path.read_text(errors="replace").splitlines()[-20:]
                print("daemon log (last lines):\n  " + "\n  ".join(tail), file=sys.stderr)
                raise

    print_report(results, daemon)
    fit = linear_fit(results)
    return {
        "schema": "densityd.bench.docker_sampling/v1",
        "date": started.isoformat(timespec="seconds"),
        "command": [Path(sys.argv[0]).as_posix(), *sys.argv[1:]],
        "machine": host,
        "image": args.image,
        "repeat": args.repeat,
        "stats_repeat": stats_repeat,
        "passes": [r.summary() for r in results],
        "fit": {"fixed_ms": fit[0], "marginal_us": fit[1]} if fit else None,
        "daemon": daemon.summary() if daemon else None,
        "targets": targets(results, daemon),
        "loadavg_at_end": loadavg(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; exit 1 when it could not measure what it meant to."""
    args = build_parser().parse_args(argv)
    if min(args.repeat, args.scrapes, args.stats_repeat or 1) < 1 or args.interval <= 0:
        print(
            "--repeat, --stats-repeat, --scrapes: at least 1; --interval: above 0", file=sys.stderr
        )
        return 2
    docker = DockerCli(args.docker)

    def cleanup() -> None:
        if args.keep:
            print("keeping the bench containers (--keep)")
        else:
            print(f"removed {docker.remove_bench_containers()} bench containers")

    return run_benchmark(lambda: run(args, docker), args.json, cleanup)


if __name__ == "__main__":
    raise SystemExit(main())
