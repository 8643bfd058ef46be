"""Running the actions Warden sends: the allow-list is a ceiling, the argv is the server's.

The allow-list file maps each action name to an argv template (warden_agent.argv). An
order from the server names an action and carries the exact argv to run and its digest.
The agent refuses, running nothing, when the action is not in the allow-list, when the
digest is not the argv's, or when the argv does not match the action's template.
Otherwise it runs that argv exactly: no shell, a timeout, and an environment without
the agent's key.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from warden_agent.argv import ArgvError, argv_digest, mismatch, placeholders

KEY_ENV = "WARDEN_AGENT_KEY"
# The server refuses a longer result output, which would lose the whole report.
OUTPUT_LIMIT = 10_000
TRUNCATED = "[... output truncated]\n"
_ACTION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")

AllowList = dict[str, list[str]]


class AllowListError(ValueError):
    """An allow-list file that cannot be used; the message is one line saying why."""


def validate_allowlist(entries: Any, source: str = "allow-list") -> AllowList:
    """The allow-list `entries` as {action: template}; AllowListError for any fault."""
    if not isinstance(entries, dict):
        raise AllowListError(f"{source} must be a JSON object {{action: [argv template...]}}")
    checked: AllowList = {}
    for action, template in entries.items():
        if not _ACTION_NAME.fullmatch(action):
            raise AllowListError(f"{source}: {action!r} is not a valid action name")
        if not (isinstance(template, list) and all(isinstance(e, str) for e in template)):
            raise AllowListError(f"{source}: {action} must map to a list of strings")
        if not template or not template[0]:
            raise AllowListError(f"{source}: {action} must name a program first")
        try:
            if placeholders(template[:1]):
                raise AllowListError(f"{source}: {action}: the program cannot be a placeholder")
            placeholders(template)
        except ArgvError as exc:
            raise AllowListError(f"{source}: {action}: {exc}") from exc
        checked[action] = list(template)
    return checked


def load_allowlist(path: str | Path) -> AllowList:
    """Read and validate an allow-list file; AllowListError with one line for any fault."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise AllowListError(f"cannot read allow-list {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise AllowListError(f"allow-list {path} is not UTF-8 text: {exc.reason}") from exc
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AllowListError(
            f"allow-list {path} is not valid JSON: {exc.msg} (line {exc.lineno}, "
            f"column {exc.colno})"
        ) from exc
    return validate_allowlist(entries, f"allow-list {path}")


def clip(output: str) -> str:
    """At most OUTPUT_LIMIT characters, keeping the end, where errors usually are."""
    if len(output) <= OUTPUT_LIMIT:
        return output
    return TRUNCATED + output[-(OUTPUT_LIMIT - len(TRUNCATED)) :]


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


@dataclass(frozen=True)
class Order:
    """One action as the server sends it on GET /api/v1/agent/actions."""

    execution_id: int
    token: int
    action: str
    argv: tuple[str, ...] | None  # None: the server sent none, or not a list of strings
    argv_digest: str
    kind: str = "run"
    ticket_id: str = ""
    lease_seconds: float | None = None  # start it only within this long of receiving it
    # Say it started within this long, and run it only once Warden answers that it may;
    # None: a Warden older than the start, which is not told.
    start_within_seconds: float | None = None

    @classmethod
    def from_message(cls, message: Mapping[str, Any]) -> Order:
        """ValueError if the message lacks what a report needs (its id and token) or a name."""
        execution_id, token = _int(message.get("execution_id")), _int(message.get("token"))
        action = message.get("action")
        if execution_id is None or token is None or not isinstance(action, str):
            raise ValueError("an action needs an integer execution_id and token and a name")
        argv = message.get("argv")
        valid = isinstance(argv, list) and all(isinstance(element, str) for element in argv)
        return cls(
            execution_id=execution_id,
            token=token,
            action=action,
            argv=tuple(argv) if valid else None,
            argv_digest=str(message.get("argv_digest") or ""),
            kind=str(message.get("kind") or "run"),
            ticket_id=str(message.get("ticket_id") or ""),
            lease_seconds=_seconds(message.get("lease_seconds")),
            start_within_seconds=_seconds(message.get("start_within_seconds")),
        )


@dataclass(frozen=True)
class Outcome:
    """What came of an order: `argv` is what ran ([] if nothing did)."""

    ok: bool
    output: str
    argv: list[str] = field(default_factory=list)
    exit_code: int | None = None


def report_body(token: int, outcome: Outcome) -> dict[str, Any]:
    """The body of POST /api/v1/agent/actions/{id}/result."""
    return {
        "token": token,
        "ok": outcome.ok,
        "output": clip(outcome.output),
        "argv": list(outcome.argv),
        "argv_digest": argv_digest(outcome.argv) if outcome.argv else "",
        "exit_code": outcome.exit_code,
    }


def not_started_body(token: int, why: str) -> dict[str, Any]:
    """The body of POST /api/v1/agent/actions/{id}/result for an order the agent did not
    start: nothing ran, so Warden may offer it again."""
    return {**report_body(token, Outcome(False, why)), "not_started": True}


class Executor:
    """Checks orders against the allow-list; subclasses say how an accepted one runs."""

    def __init__(self, allowlist: Mapping[str, Sequence[str]]) -> None:
        self.allowlist: AllowList = {action: list(t) for action, t in allowlist.items()}

    def refusal(self, order: Order) -> str | None:
        """Why `order` must not run, or None when it may."""
        template = self.allowlist.get(order.action)
        if template is None:
            return f"action {order.action} is not allow-listed on this agent"
        if order.argv is None:
            return f"action {order.action} came without an argv (a list of strings)"
        if argv_digest(order.argv) != order.argv_digest:
            return f"action {order.action}: argv_digest is not the digest of the argv sent"
        problem = mismatch(template, order.argv)
        if problem:
            return f"action {order.action}: argv does not match its allow-list template: {problem}"
        return None

    def execute(self, order: Order) -> Outcome:
        """Refuse or run `order`; never raises: the server must hear of any failure."""
        refused = self.refusal(order)
        if refused:
            return Outcome(ok=False, output=refused)
        try:
            outcome = self.run(order)
        except Exception as exc:
            return Outcome(False, f"{type(exc).__name__}: {exc}", list(order.argv or ()))
        return Outcome(outcome.ok, clip(outcome.output), outcome.argv, outcome.exit_code)

    def run(self, order: Order) -> Outcome:
        raise NotImplementedError


def action_environment(order: Order) -> dict[str, str]:
    """The agent's environment without its key, with the order's ids, and with the
    agent's own bin directory first on PATH so `warden-runbook` is the bundled one."""
    env = {name: value for name, value in os.environ.items() if name != KEY_ENV}
    bindir = os.path.dirname(sys.executable)  # not resolved: a venv's bin, not /usr/bin
    env["PATH"] = os.pathsep.join(p for p in (bindir, env.get("PATH", os.defpath)) if p)
    env["WARDEN_EXECUTION_ID"] = str(order.execution_id)
    env["WARDEN_TICKET_ID"] = order.ticket_id
    env["WARDEN_ACTION_KIND"] = order.kind
    return env


class CommandExecutor(Executor):
    """Runs the argv of an accepted order as a process: no shell, with a timeout."""

    def __init__(self, allowlist: Mapping[str, Sequence[str]], timeout: float = 60.0) -> None:
        super().__init__(allowlist)
        self.timeout = timeout

    def run(self, order: Order) -> Outcome:
        argv = list(order.argv or ())
        try:
            # A session of its own: on a timeout the whole group goes, not only argv[0].
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                env=action_environment(order),
                start_new_session=True,
            )
        except OSError as exc:  # no such program, not executable: nothing ran
            return Outcome(False, f"cannot run {argv[0]}: {exc.strerror or exc}")
        with process:
            try:
                output, _ = process.communicate(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                partial, _ = process.communicate()
                return Outcome(False, f"{partial}\ntimed out after {self.timeout:g}s", argv)
        if process.returncode != 0:
            output += f"\nexit code {process.returncode}"
        return Outcome(process.returncode == 0, output, argv, process.returncode)
