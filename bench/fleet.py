"""How fast the planner answers for a fleet, and how well it packs several shapes at once.

One command, no backend needed (the fleets are synthetic, built in memory)::

    /opt/densityd-venv/bin/python bench/fleet.py --json /tmp/fleet.json

1. **Single-shape fleet answer**: fleets of 1,000 and 10,000 hosts of mixed sizes (16/32/64
   cores, 64/128/256 GiB, 1-4 TB of disk), 20 workloads each (70 % containers with and
   without limits, 30 % VMs, 5 % stopped), and a 15-point daily demand trend per host, built as
   ``PlanInputs`` (setup, timed apart). Timed: ``fleet.fleet_answers`` for one shape
   (``web=cpu=0.5,memory=512Mi`` as a container) in both views, median of ``--repeat``
   runs; target < 2 s at 10,000 hosts. For scale: ``plan.answer`` on every host of the
   1,000-host fleet, and building every host's full ``Answer`` objects at 10,000. Before
   timing, 200 hosts of each fleet are checked against ``plan.answer``.
2. **Three-shape packing on the fleet**: web (container), db (VM) and cache (container),
   each asked for at 40 % of what the fleet holds of that shape alone, so together they
   need the whole fleet and some new hosts (``--new-host``, default 64 cores, 256 GiB,
   4 TB). Timed: ``fleet.pack_fleet`` (median of 3). Reported: copies placed, overflow,
   new hosts against their lower bound, existing hosts used against theirs.
3. **Packing quality**: ``--instances`` random three-shape instances per family packed onto
   empty new hosts, new hosts used over the lower bound ``max_r ceil(sum demand_r /
   capacity_r)``; target within 5 %. Families: *web/db/cache* (the shapes above, sizes
   jittered) and *complementary* (one shape heavy on CPU, one on memory, one on disk: the
   hard case for a greedy packing, and for that bound). Each instance is also packed opening
   new hosts one at a time, the classic first fit, for comparison. With ``--exact`` and
   scipy importable (it is no densityd dependency; the system Python here has it), each
   instance is also solved exactly as an integer program over host configurations, to tell
   the packing's gap from the bound's::

       PYTHONPATH=. python3 bench/fleet.py --exact

Everything comes from ``--seed``; timestamps are simulated. About 40 s on 2 cores (a minute
more with ``--exact``).
"""

from __future__ import annotations

import argparse
import gc
import platform
import sys
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import loadavg, machine_basics, progress, run_benchmark
from _fleet_measure import measure_fleet, measure_instances, measure_packing, solve_exactly
from _fleet_report import family_stats, print_report, targets

from densityd import __version__ as densityd_version
from densityd.plan.core.model import RESOURCES, PlanSettings, Resources
from densityd.plan.core.quantity import parse_profile, parse_resources

# -- main --------------------------------------------------------------------------------------


def parse_sizes(text: str) -> list[int]:
    """``1000,10000`` -> ``[1000, 10000]``."""
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of host counts: {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("host counts must be at least 1")
    return sizes


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's command line."""
    parser = argparse.ArgumentParser(
        description="Time the planner's fleet answer and packing; measure packing quality."
    )
    parser.add_argument(
        "--hosts", type=parse_sizes, default=[1000, 10000], help="fleet sizes (1000,10000)"
    )
    parser.add_argument("--workloads", type=int, default=20, help="per host (20)")
    parser.add_argument("--repeat", type=int, default=5, help="timed fleet answers per size (5)")
    parser.add_argument(
        "--instances", type=int, default=10, help="generated packing instances per family (10)"
    )
    parser.add_argument(
        "--new-host",
        default="cpu=64,memory=256Gi,disk=4T",
        help="the new host's size (cpu=64,memory=256Gi,disk=4T)",
    )
    parser.add_argument(
        "--exact",
        action="store_true",
        help="also solve each generated instance exactly (needs scipy, no densityd dependency)",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (1)")
    parser.add_argument("--json", metavar="FILE", type=Path, help="also write the results here")
    return parser


def run(args: argparse.Namespace) -> dict[str, Any]:
    """All three measurements; the JSON document."""
    started = datetime.now(UTC)
    host: dict[str, Any] = {
        **machine_basics(),
        "python": platform.python_version(),
        "densityd": densityd_version,
        "loadavg_at_start": loadavg(),
    }
    print(
        f"machine: {host['cpus']} cores ({host['cpu_model']}), kernel {host['kernel']}, "
        f"Python {host['python']}, densityd {host['densityd']}; "
        f"load average {' '.join(host['loadavg_at_start'])}"
    )
    settings = PlanSettings()
    new_host = _new_host(args.new_host)
    web = parse_profile("web=cpu=0.5,memory=512Mi")
    fleets, packs = [], []
    for size in args.hosts:
        result, hosts = measure_fleet(size, args.workloads, args.seed, args.repeat, web, settings)
        fleets.append(result)
        packs.append(measure_packing(hosts, settings, new_host, 0.4))
        del hosts
        gc.collect()
    instances = measure_instances(args.instances, args.seed, settings, new_host)
    if args.exact:
        progress(f"3. solving the {len(instances)} instances exactly ...")
        if not solve_exactly(instances, 20.0):
            print("--exact: scipy is not importable here; skipped", file=sys.stderr)
    print_report(fleets, packs, instances)
    return {
        "schema": "densityd.bench.fleet/v1",
        "date": started.isoformat(timespec="seconds"),
        "command": [Path(sys.argv[0]).as_posix(), *sys.argv[1:]],
        "machine": host,
        "new_host": asdict(new_host),
        "fleets": [f.summary() for f in fleets],
        "packing": [p.summary() for p in packs],
        "quality": {
            family: family_stats(instances, family)
            for family in ("web/db/cache", "complementary")
            if args.instances
        },
        "instances": [{**asdict(i), "ratio": i.ratio} for i in instances],
        "targets": targets(fleets, instances),
        "loadavg_at_end": loadavg(),
    }


def _new_host(text: str) -> Resources:
    """``--new-host`` as Resources; a resource left out is 0 (the new host has none of it)."""
    partial = parse_resources(text, option="--new-host", kind="capacity")
    return Resources(**{r.value: partial.get(r) or 0.0 for r in RESOURCES})


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; exit 1 when it could not measure what it meant to."""
    args = build_parser().parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress interleaves
    if min(args.workloads, args.repeat) < 1 or args.instances < 0:
        print("--workloads, --repeat: at least 1; --instances: at least 0", file=sys.stderr)
        return 2
    return run_benchmark(lambda: run(args), args.json)


if __name__ == "__main__":
    sys.exit(main())
