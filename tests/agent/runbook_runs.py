"""Running `warden-runbook` as the agent does, for the runbook tests: this Python with the
agent's source on its path, the execution id in the environment, and what it printed."""

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

AGENT_DIR = Path(__file__).resolve().parents[2] / "agent"
RUNBOOKS = (sys.executable, "-m", "warden_agent.runbooks")


@dataclass
class Run:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def summary(self) -> dict[str, Any]:
        """The runbook's last line: its JSON summary."""
        return json.loads(self.stdout.strip().splitlines()[-1])


def runbook_env(execution_id: str | None = None) -> dict[str, str]:
    """This process's environment, the agent's source importable, and WARDEN_EXECUTION_ID
    as the agent would set it (none when `execution_id` is None)."""
    env = {**os.environ, "PYTHONPATH": str(AGENT_DIR)}
    env.pop("WARDEN_EXECUTION_ID", None)
    if execution_id is not None:
        env["WARDEN_EXECUTION_ID"] = execution_id
    return env


def run_runbook(
    *args: str,
    execution_id: str | None = None,
    env: Mapping[str, str] | None = None,
    prefix: Sequence[str] = (),
    timeout: float = 120,
) -> Run:
    """Run `warden-runbook ARGS` (behind `prefix`, e.g. `ip netns exec NAME`), `env` on top
    of runbook_env."""
    completed = subprocess.run(
        [*prefix, *RUNBOOKS, *args],
        capture_output=True,
        text=True,
        env={**runbook_env(execution_id), **(env or {})},
        timeout=timeout,
        check=False,
    )
    return Run(completed.returncode, completed.stdout, completed.stderr)
