"""The daemon imports only what it uses (issue 16 item 4): what only commands need stays out.

Every module imported costs the daemon resident memory for as long as it runs; the commands
(``densityd plan``, ``densityd sample``) load theirs when they run.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests import paths

# Each module the daemon must not import, and why it is a command's.
COMMAND_ONLY = {
    "densityd.plan.command": "the plan command",
    "densityd.plan.command_answer": "fleet plans, packing and the rightsizing report",
    "densityd.plan.inputs.fleet": "the fleet client: densityd plan --prometheus",
    "densityd.plan.inputs.prometheus": "the fleet client: densityd plan --prometheus",
    "densityd.plan.inputs.promql": "the fleet client: densityd plan --prometheus",
    "densityd.plan.inputs.daemon": "densityd plan asking a running daemon",
    "densityd.plan.core.fleet": "fleet answers: densityd plan --prometheus",
    "densityd.plan.core.packing": "several shapes at once: densityd plan --count",
    "densityd.plan.output.local": "the plan table (the daemon serves the JSON document)",
    "densityd.plan.output.fleet": "the fleet table and document",
    "densityd.plan.output.packing": "the packing table and document",
    "densityd.plan.output.rightsize": "the rightsizing report",
    "densityd.collect.once": "densityd sample's table",
    "densityd.serve.basic_auth": "basic auth: only with a web config file that has users",
    "tabulate": "table formatting: plan and sample print tables, the daemon serves JSON",
    "yaml": "only for a web config file or a packing file, imported when one is given",
    "bcrypt": "basic auth: only with a web config file that has users",
}


def test_the_daemon_imports_no_command_only_module() -> None:
    code = "import sys, json, densityd.daemon; print(json.dumps(sorted(sys.modules)))"
    found = subprocess.run(
        [sys.executable, "-c", code], cwd=paths.ROOT, capture_output=True, text=True, check=True
    )
    loaded = set(json.loads(found.stdout))
    assert "densityd.plan.live" in loaded  # the check itself imports what it should
    imported = {name: why for name, why in COMMAND_ONLY.items() if name in loaded}
    assert imported == {}
