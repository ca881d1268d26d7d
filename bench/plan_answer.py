"""How long ``densityd plan`` takes where a daemon runs, against sampling the host itself.

One command, on a host with the backends densityd finds (Docker, libvirt)::

    /opt/densityd-venv/bin/python bench/plan_answer.py --json /tmp/plan_answer.json

Starts one ``densityd run`` (default settings but a free loopback port and a temporary state
directory) and waits for its first plan; then runs ``densityd plan`` as a user does, ``--runs``
times each and alternately: answered by that daemon, and with ``--no-daemon`` (a fresh
sample, as before). Reports each one's wall time (median, p90), their ratio, the command's
peak RSS, and the import time of what the command loads before it asks the daemon
(``python -X importtime``); target: under 0.5 s wall with a daemon running.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    BenchError,
    clean_env,
    free_port,
    machine_basics,
    percentile,
    print_targets,
    progress,
    run_benchmark,
    scrape,
    stop_child,
)

TARGET_SECONDS = 0.5


def _plan(flags: list[str]) -> tuple[float, int, str]:
    """One ``densityd plan``: its wall time, peak RSS (bytes) and stderr."""
    start = time.perf_counter()
    result = subprocess.run(
        ["/usr/bin/time", "-f", "maxrss=%M", sys.executable, "-m", "densityd", "plan", *flags],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=120,
    )
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise BenchError(f"densityd plan {' '.join(flags)} failed: {result.stderr[-2000:]}")
    found = re.search(r"maxrss=(\d+)", result.stderr)
    return wall, int(found.group(1)) * 1024 if found else 0, result.stderr


def _import_seconds() -> float:
    """What the command imports before it asks the daemon: the CLI, the plan command and the
    daemon client (``-X importtime``'s cumulative microseconds of the three)."""
    code = "import densityd.cli, densityd.plan.command, densityd.serve.local_client"
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
    )
    total = 0
    for line in result.stderr.splitlines():
        parts = [part.strip() for part in line.removeprefix("import time:").split("|")]
        if len(parts) == 3 and parts[2] in {
            "densityd.cli",
            "densityd.plan.command",
            "densityd.serve.local_client",
        }:
            total += int(parts[1])
    return total / 1e6


def run(runs: int) -> dict[str, Any]:
    """Start the daemon, time both ways of planning, print the table; the JSON document."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="densityd-bench-plan-") as state:
        common = ["--listen-address", f"127.0.0.1:{port}", "--state-dir", state]
        daemon = subprocess.Popen(
            [sys.executable, "-m", "densityd", "run", *common],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=clean_env(),
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if b"densityd_plan_remaining" in scrape(port, timeout=2)[1]:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline or daemon.poll() is not None:
                    raise BenchError("the daemon did not export a plan within 60 s")
                time.sleep(0.5)
            asked: list[float] = []
            sampled: list[float] = []
            rss: list[int] = []
            for index in range(runs):
                progress(f"run {index + 1}/{runs}")
                wall, peak, said = _plan(common)
                if "answered by the daemon" not in said:
                    raise BenchError(f"the daemon did not answer: {said[-500:]}")
                asked.append(wall)
                rss.append(peak)
                sampled.append(_plan([*common, "--no-daemon"])[0])
        finally:
            stop_child(daemon)
    imports = _import_seconds()
    found = {
        "machine": machine_basics(),
        "runs": runs,
        "asked_median_s": statistics.median(asked),
        "asked_p90_s": percentile(asked, 90),
        "sampled_median_s": statistics.median(sampled),
        "sampled_p90_s": percentile(sampled, 90),
        "ratio": statistics.median(sampled) / statistics.median(asked),
        "command_peak_rss_bytes": max(rss),
        "imports_s": imports,
    }
    print(f"densityd plan, {runs} runs each (alternately)")
    print(f"{'':28} {'median':>9} {'p90':>9}")
    asked_line = f"{found['asked_median_s']:8.3f}s {found['asked_p90_s']:8.3f}s"
    print(f"{'answered by the daemon':28} {asked_line}")
    print(
        f"{'--no-daemon (sampling here)':28} {found['sampled_median_s']:8.3f}s "
        f"{found['sampled_p90_s']:8.3f}s"
    )
    print(f"sampling / asking: {found['ratio']:.1f}x")
    print(f"command peak RSS {max(rss) / 2**20:.1f} MiB; imports before asking {imports:.3f} s")
    targets = [
        {
            "target": f"densityd plan with a daemon running under {TARGET_SECONDS} s wall",
            "measured": f"{found['asked_median_s']:.3f} s median",
            "met": found["asked_median_s"] < TARGET_SECONDS,
        }
    ]
    print_targets(targets)
    found["targets"] = targets
    return found


def main() -> int:
    """Parse the options and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="plans each way (default 10)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    return run_benchmark(lambda: run(args.runs), args.json)


if __name__ == "__main__":
    sys.exit(main())
