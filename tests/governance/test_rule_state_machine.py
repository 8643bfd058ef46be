"""Every verb, interleaved: a stateful test of the governance rules and the audit trail.

A hypothesis RuleBasedStateMachine drives Warden's use cases on a fake clock: agents send
problem and healthy readings (decisions), poll for actions and report on them; a worker
dispatches, sweeps, expires approvals and releases held work; people approve and reject,
edit runbooks and policies (shadow mode, disabled), pause and resume, cancel executions
and close tickets; and time passes, past leases, timeouts and approvals' lives.

It checks that

1. an agent receives an action only if, at that instant, every rule allows it: read
   from the database by the test itself (not by asking the product's own checks); one
   action per poll; no execution's action is ever sent twice;
2. after every step, every Execution, ApprovalRequest, Ticket and Pause whose state
   changed in it has a new audit event naming it (a ticket: on the Ticket, or through
   the event that moved it, which carries its ticket_id); no row makes a move its
   transition table forbids; one approval or decision never makes two executions; an
   agent's late report is kept and audited; and the audit chain verifies at the end of
   each run.

Each run (example) starts from the same world inside a savepoint that is rolled back
afterwards: the audit log is append-only in the database, so nothing is ever deleted.

Why one rule that draws a verb, not one rule per verb: hypothesis turns a random subset
of the rules off in each run (swarm testing). With a rule per verb, most runs lost the
agent's poll or the worker's dispatch, and an action reached an agent in a handful of
runs. Here the verbs have weights, and each run draws its own mix of them (tempo()):
it may go without the verbs that disturb (edits, pauses, time, cancels...), never
without those that move work forward.
"""

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, note
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from governance.approvals.actions import approve_request, reject_request
from governance.approvals.requests import ApprovalError, expire_approval_requests
from governance.audit.log import verify_audit_log
from governance.models import ApprovalRequest, AuditEvent, Decision, Pause, Policy
from governance.pauses.actions import pause_automation, resume_pause
from governance.pauses.state import record_lapsed_pauses
from governance.policies.actions import save_policy
from remediation.actions import add_host, cancel_execution, close_ticket, save_runbook
from remediation.choices import EXECUTION_TRANSITIONS, TICKET_TRANSITIONS
from remediation.executions import ExecutionError
from remediation.executions import rows as rows_module
from remediation.executions.claims import AgentAction, claim_agent_actions, start_agent_action
from remediation.executions.holds import release_held_executions
from remediation.executions.queueing import dispatch_execution
from remediation.executions.reports import RunReport, report_agent_result
from remediation.executions.sweeps import sweep
from remediation.models import Execution, Host, Runbook, Ticket
from remediation.pipeline import ingest_samples
from scoring.features import METRIC_NAMES, Reading
from scoring.models import MetricSample
from tests.conftest import HEALTHY, PROBLEMS

# Execution mechanics: self-healing trusts from the first ticket (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("trusting_policies")

# About 90 s (47 s of CPU) on PostgreSQL within `make test` on a 2-core machine (3,200
# steps a run; each run draws new ones, so the runs add up).
MAX_EXAMPLES = 40
STEPS_PER_EXAMPLE = 80

# A Monday morning after every row the fixtures write; neither category's default
# policy has a time window (governance/rules/defaults.py).
START = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)
# Disk heals itself (L3, no approval); a firewall change needs two approvers (critical).
CATEGORIES = ("disk", "firewall")
FINISHED = ("succeeded", "failed", "rolled_back", "rollback_failed", "cancelled")
CLAIMABLE = ("dispatched", "rollback_pending")

# verb: (weight, what it needs in self.summary to be worth drawing, may a run do without)
VERBS: dict[str, tuple[int, str, bool]] = {
    # agents
    "sample": (6, "", False),
    "problem": (3, "", False),
    "recover": (1, "", True),
    "poll": (4, "claimable", False),
    "poll idle": (1, "", True),
    "poll late": (4, "claimable", True),
    "report": (4, "unreported", False),
    "late report": (2, "claims", True),
    # a worker and the scheduled tasks
    "dispatch": (4, "queued", False),
    "redeliver": (1, "executions", True),
    "sweep": (2, "", True),
    "expire": (1, "requests", True),
    "release": (1, "held", True),
    # people
    "approve": (4, "pending", False),
    "reject": (1, "requests", True),
    "edit runbook": (2, "", True),
    "edit policy": (2, "", True),
    "pause": (2, "", True),
    "resume": (2, "pauses", True),
    "cancel": (1, "executions", True),
    "close": (1, "tickets", True),
    # time
    "advance time": (3, "", True),
}


def tempo() -> st.SearchStrategy[dict[str, int]]:
    """Each run's own mix: every verb's weight times 1 to 3, or 0 (never) for the verbs
    a run may do without. So some runs poll rarely and let time pass, others never
    edit, pause or cancel, others do little else."""
    return st.fixed_dictionaries(
        {
            verb: st.sampled_from([1, 2, 3, 0] if optional else [1, 2, 3])
            for verb, (_, _, optional) in VERBS.items()
        }
    )


@dataclass
class World:
    """What every run shares: built once per test; each run rolls its changes back."""

    hosts: list[Host]
    supervisor: Any
    approvers: list[Any]
    examples: int = 0
    steps: int = 0
    seen: Counter = field(default_factory=Counter)  # what the runs reached, for the report


def seconds_to_pass() -> st.SearchStrategy[int]:
    """Small steps, just past each deadline the product keeps, and up to twice the longest."""
    s = django_settings
    deadlines = [
        s.WARDEN_AGENT_LEASE_SECONDS,
        s.WARDEN_REQUEUE_AFTER_SECONDS,
        s.WARDEN_VERIFY_TIMEOUT_SECONDS,
        s.WARDEN_DISPATCH_TIMEOUT_SECONDS,
        s.WARDEN_HELD_TIMEOUT_SECONDS,
        int(s.WARDEN_APPROVAL_TTL_HOURS * 3600),
    ]
    return st.one_of(
        st.integers(1, 120),
        st.integers(1, 900),
        st.sampled_from([d + 1 for d in deadlines]),
        st.integers(1, 2 * max(deadlines)),
    )


def reachable(table: dict[str, frozenset[str]], start: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for target in table.get(todo.pop(), frozenset()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def may_become(kind: str, old: Any, new: Any) -> bool:
    """Whether a row may go from `old` to `new` within one step, by the transition tables:
    a final state stays final; a decided request stays decided; an ended pause stays so."""
    if kind == "Execution":
        return new in reachable(EXECUTION_TRANSITIONS, old)
    if kind == "Ticket":
        return new[0] in reachable(TICKET_TRANSITIONS, old[0])
    if kind == "ApprovalRequest":
        return old == "pending" or new == old
    resumed, lapsed = old
    return (resumed is None or new[0] == resumed) and (lapsed is None or new[1] == lapsed)


class ExecutionRow(NamedTuple):
    pk: int
    state: str
    ticket: int
    approval_request: int | None
    decision: int | None


class RequestRow(NamedTuple):
    pk: int
    status: str
    ticket: int


@dataclass
class Rows:
    """The rows whose states the invariants follow, read once after each step (four queries:
    the machine runs thousands of steps)."""

    executions: list[ExecutionRow]
    requests: list[RequestRow]
    tickets: list[tuple[int, str, str]]  # pk, status, ticket_id
    pauses: list[tuple[int, Any, Any]]  # pk, resumed_at, lapsed_at

    @classmethod
    def read(cls) -> "Rows":
        return cls(
            executions=[
                ExecutionRow(*row)
                for row in Execution.objects.values_list(
                    "pk", "state", "ticket_id", "approval_request_id", "decision_id"
                )
            ],
            requests=[
                RequestRow(*row)
                for row in ApprovalRequest.objects.values_list("pk", "status", "ticket_id")
            ],
            tickets=list(Ticket.objects.values_list("pk", "status", "ticket_id")),
            pauses=list(Pause.objects.values_list("pk", "resumed_at", "lapsed_at")),
        )

    def states(self) -> dict[tuple[str, int], Any]:
        state: dict[tuple[str, int], Any] = {}
        for execution in self.executions:
            state["Execution", execution.pk] = execution.state
        for request in self.requests:
            state["ApprovalRequest", request.pk] = request.status
        for pk, status, ticket_id in self.tickets:
            state["Ticket", pk] = (status, ticket_id)
        for pk, resumed, lapsed in self.pauses:
            state["Pause", pk] = (resumed, lapsed)
        return state

    def executions_sharing_an_approval_or_decision(self) -> list[str]:
        shared = []
        for column in ("approval_request", "decision"):
            counts = Counter(getattr(e, column) for e in self.executions)
            shared += [f"{column} {pk}: {n}" for pk, n in counts.items() if pk and n > 1]
        return shared


class GovernanceMachine(RuleBasedStateMachine):
    world: World  # set by the test before it runs the machine

    # ---- the world -------------------------------------------------------------------

    @initialize(mix=tempo())
    def start(self, mix: dict[str, int]) -> None:
        """A savepoint; then a full disk on web-01 (healed automatically: queued) and a
        firewall change on web-02 (waiting for two approvals)."""
        self.atomic = transaction.atomic()
        self.atomic.__enter__()
        self.world.examples += 1
        self.weights = {verb: weight * mix[verb] for verb, (weight, _, _) in VERBS.items()}
        self.now = START
        self.claimed: list[tuple[int, AgentAction]] = []  # (host index, action), in order
        self.reported: set[AgentAction] = set()
        self.ran: set[int] = set()  # executions whose action an agent started
        self.step_name = "start"
        self.last_audit = self.audit_sequence()
        self.before = Rows.read()
        # What each host's readings show until it changes: a problem appears, goes away
        # by itself, or an action that ran fixes it.
        self.condition: dict[int, str | None] = {0: "disk", 1: "firewall"}
        self.post_reading(0)
        self.post_reading(1)
        self.summary = self.summarise(Rows.read())

    def teardown(self) -> None:
        if not hasattr(self, "atomic"):
            return
        try:
            seen = self.world.seen
            for outcome, shadow in Decision.objects.values_list("outcome", "shadow"):
                seen[f"decision {outcome}{' (shadow)' if shadow else ''}"] += 1
            for state in Execution.objects.values_list("state", flat=True):
                seen[f"execution ended {state}"] += 1
            for status in ApprovalRequest.objects.values_list("status", flat=True):
                seen[f"approval request ended {status}"] += 1
            report = verify_audit_log()
            assert report.intact, report.line
        finally:
            transaction.set_rollback(True)
            self.atomic.__exit__(None, None, None)

    def summarise(self, rows: Rows) -> dict[str, int]:
        """What there is to act on, after each step."""
        states = Counter(execution.state for execution in rows.executions)
        requests = Counter(request.status for request in rows.requests)
        return {
            "executions": sum(states.values()),
            "queued": states["queued"],
            "held": states["held"],
            "claimable": sum(states[state] for state in CLAIMABLE),
            "claims": len(self.claimed),
            "unreported": len(self.claimed) - len(self.reported),
            "requests": sum(requests.values()),
            "pending": requests["pending"],
            "tickets": len(rows.tickets),
            "pauses": sum(resumed is None for _, resumed, _ in rows.pauses),
        }

    def host(self, index: int) -> Host:
        return Host.objects.get(pk=self.world.hosts[index].pk)

    def draw_row(self, data: st.DataObject, rows: Any, label: str) -> Any:
        rows = list(rows)
        return rows[data.draw(st.integers(0, len(rows) - 1), label=label)] if rows else None

    # ---- the one rule ----------------------------------------------------------------

    @rule(data=st.data())
    def step(self, data: st.DataObject) -> None:
        menu = [
            verb
            for verb, (_, needs, _) in VERBS.items()
            for _ in range(self.weights[verb])
            if not needs or self.summary[needs]
        ]
        verb = data.draw(st.sampled_from(menu), label="verb")
        self.now += timedelta(seconds=1)  # each reading newer than the last
        self.world.steps += 1
        self.step_name = verb
        note(f"{verb} at {self.now:%Y-%m-%d %H:%M:%S}")
        self.verbs[verb](self, data)

    # ---- agents ----------------------------------------------------------------------

    def sample(self, data: st.DataObject, change: str = "") -> None:
        """A host's agent sends a reading of what the host shows now; or a problem appears
        on it, or goes away by itself, and its next reading says so. A problem reading
        opens a ticket (or counts on the open one) and decides; a healthy one verifies
        what ran, or makes what waits for the problem moot."""
        index = data.draw(st.integers(0, 1), label="host")
        if change == "problem":
            self.condition[index] = data.draw(st.sampled_from(CATEGORIES), label="shows")
        elif change == "recover":
            self.condition[index] = None
        self.post_reading(index)

    def post_reading(self, index: int) -> None:
        host, shows = self.host(index), self.condition[index]
        values = {**HEALTHY, **(PROBLEMS[shows] if shows else {})}
        taken = Reading(host.name, self.now, *(float(values[name]) for name in METRIC_NAMES))
        [verdict] = ingest_samples(host, [taken], self.now)
        note(f"  {host.name}: {verdict.category} {verdict.decision} {verdict.ticket_id}")

    def poll(self, data: st.DataObject, idle: bool = False, late: bool = False) -> None:
        """An agent polls (one with something waiting, unless idle; late: after it was
        away a while, no sweep in between): whatever it gets must be allowed now."""
        if late:
            self.now += timedelta(seconds=data.draw(seconds_to_pass(), label="away"))
        if idle:
            index = data.draw(st.integers(0, 1), label="host")
        else:
            waiting = Execution.objects.filter(state__in=CLAIMABLE).values_list("host_id")
            ids = [host.pk for host in self.world.hosts]
            host_id = self.draw_row(data, sorted({pk for (pk,) in waiting}), "host")
            index = ids.index(host_id)
        host = self.host(index)
        states = dict(Execution.objects.filter(host=host).values_list("pk", "state"))
        actions = claim_agent_actions(host, self.now)
        self.world.seen["poll"] += 1
        for pk, state in Execution.objects.filter(pk__in=list(states)).values_list("pk", "state"):
            if states[pk] == "dispatched" and state in ("held", "cancelled"):
                self.world.seen[
                    f"poll found a dispatched execution no longer allowed: {state}"
                ] += 1
        assert len(actions) <= 1, f"one action per poll, {host.name} got {actions}"
        for action in actions:
            note(f"  {host.name} got {action.kind} {action.action} ({action.execution_id})")
            self.world.seen[f"agent got a {action.kind}"] += 1
            if action.kind == "run":
                self.check_run_allowed(action, states.get(action.execution_id))
            else:
                self.check_rollback(action, states.get(action.execution_id))
            self.claimed.append((index, action))
            # A faithful agent says it started before it runs anything; one that went away
            # (or is older than the start) does not.
            if data.draw(st.sampled_from([True, True, False]), label="says it started"):
                self.say_started(host, action)

    def say_started(self, host: Host, action: AgentAction) -> None:
        try:
            started = start_agent_action(
                host, action.execution_id, token=action.token, now=self.now
            )
        except ExecutionError as error:
            self.world.seen[f"start refused: {error.code}"] += 1
            state = Execution.objects.values_list("state", flat=True).get(pk=action.execution_id)
            assert state not in ("running", "rolling_back"), f"a refused start left it {state}"
            return
        self.world.seen[f"agent started a {action.kind}"] += 1
        assert started.state == {"run": "running", "rollback": "rolling_back"}[action.kind]
        if action.kind == "run":
            self.ran.add(action.execution_id)

    def report(self, data: st.DataObject, late: bool = False) -> None:
        """An agent reports on its oldest action not reported yet; or, late, on any action
        it was given (after a cancel, a sweep, a newer claim), perhaps with a wrong token."""
        if late:
            claim = self.draw_row(data, reversed(self.claimed), "claim")
            token = data.draw(st.sampled_from([0, -1, 1]), label="token offset")
        else:
            claim = next(c for c in self.claimed if c[1] not in self.reported)
            token = 0
        ok = data.draw(st.sampled_from([True, True, False]), label="ok")
        host, action = claim
        before = Execution.objects.select_related("runbook").get(pk=action.execution_id)
        fixed = action.kind == "run" and ok and action not in self.reported
        if fixed and self.condition[host] == before.runbook.category:
            self.condition[host] = None  # the agent ran it and it worked
        self.reported.add(action)
        try:
            after = report_agent_result(
                self.host(host),
                action.execution_id,
                RunReport(
                    ok=ok,
                    output="done" if ok else "it failed",
                    argv=list(action.argv),  # a faithful agent reports what it was sent
                    argv_digest=action.argv_digest,
                    exit_code=0 if ok else 1,
                ),
                token=action.token + token,
                now=self.now,
            )
        except ExecutionError as error:
            note(f"  report refused: {error.code}")
            self.world.seen[f"report refused: {error.code}"] += 1
            state = Execution.objects.values_list("state", flat=True).get(pk=action.execution_id)
            if error.code == "argv_mismatch":
                # A token off by one can be the execution's current claim (its rollback's):
                # whoever holds the claim says it ran another command, so something not
                # decided may have run: the execution ends (cancelled, or its rollback
                # failed) and people are told, never left as it was.
                ended = {
                    "running": "cancelled",
                    "claimed": "cancelled",
                    "rolling_back": "rollback_failed",
                    "rollback_claimed": "rollback_failed",
                }
                assert state == ended[before.state], f"{before.state} became {state}"
            else:
                assert state == before.state, f"a refused report moved {before.state} to {state}"
            if error.code == "not_running" and action.token + token == before.fencing_token:
                # The agent held the lease when it started: what it says happened on the
                # host is kept and audited, not lost with the refusal.
                kept = AuditEvent.objects.filter(
                    sequence__gt=self.last_audit,
                    action="execution.late_report",
                    object_id=str(action.execution_id),
                )
                assert kept.exists(), f"a late report on a {state} execution was lost"
            return
        self.world.seen[f"report on a {before.state} execution accepted"] += 1
        # (A made-up token may be the current one: an older claim's token + 1 is its
        # rollback's. The product cannot tell, and need not.)
        assert action.token + token == before.fencing_token, (
            f"a report with token {action.token + token} was accepted at token "
            f"{before.fencing_token}"
        )
        # A report on a claim its agent never said it started (an agent older than the
        # start) starts it as it is recorded.
        expected = {
            "running": {"verifying", "failed", "rollback_pending"},
            "claimed": {"verifying", "failed", "rollback_pending"},
            "rolling_back": {"rolled_back", "rollback_failed"},
            "rollback_claimed": {"rolled_back", "rollback_failed"},
        }.get(before.state, set())
        assert after.state in expected, f"a report moved {before.state} to {after.state}"
        if before.state == "claimed":
            self.ran.add(action.execution_id)

    # ---- a worker and the scheduled tasks --------------------------------------------------

    def dispatch(self, data: st.DataObject, redeliver: bool = False) -> None:
        """A worker takes a queued execution's task (or a repeated delivery of any one's)."""
        rows = Execution.objects.order_by("pk")
        execution = self.draw_row(data, rows if redeliver else rows.filter(state="queued"), "row")
        state = dispatch_execution(execution.pk, self.now)
        self.world.seen[f"dispatch -> {state}"] += 1
        note(f"  execution {execution.pk}: {state}")

    def run_sweeper(self, data: st.DataObject) -> None:
        """The scheduled sweep: lost tasks, leases, every waiting state's deadline, held
        work whose pause ended; and the pauses that lapsed."""
        sweep(self.now)
        record_lapsed_pauses(self.now)

    def advance_time(self, data: st.DataObject) -> None:
        """Time passes (past a lease, a timeout, an approval's life), perhaps with a sweep."""
        self.now += timedelta(seconds=data.draw(seconds_to_pass(), label="seconds"))
        note(f"  now {self.now:%Y-%m-%d %H:%M:%S}")
        if data.draw(st.sampled_from([False, False, True]), label="then sweep"):
            sweep(self.now)
            record_lapsed_pauses(self.now)
            expire_approval_requests(self.now)

    # ---- people ----------------------------------------------------------------------

    def approve(self, data: st.DataObject) -> None:
        requests = ApprovalRequest.objects.filter(status="pending").order_by("pk")
        request = self.draw_row(data, requests, "request")
        who = self.world.approvers[data.draw(st.integers(0, 2), label="approver")]
        try:
            approve_request(request, actor=who, reason="ok", now=self.now)
            self.world.seen["approval given"] += 1
        except ApprovalError as error:
            self.world.seen[f"approval refused: {error.code}"] += 1
            note(f"  approval refused: {error.code}")

    def reject(self, data: st.DataObject) -> None:
        request = self.draw_row(data, ApprovalRequest.objects.order_by("pk"), "request")
        who = self.world.approvers[data.draw(st.integers(0, 2), label="approver")]
        try:
            reject_request(request, actor=who, reason="no", now=self.now)
            self.world.seen["rejection given"] += 1
        except ApprovalError as error:
            note(f"  rejection refused: {error.code}")

    def edit_runbook(self, data: st.DataObject) -> None:
        """A new version: pending approvals void, unstarted executions cancel, tickets are
        decided again."""
        category = data.draw(st.sampled_from(CATEGORIES), label="category")
        what = data.draw(st.sampled_from(["description", "action", "enabled"]), label="field")
        runbook = Runbook.objects.filter(category=category).order_by("pk").first()
        if what == "description":
            runbook.description = f"{runbook.description.split(' @')[0]} @{self.now:%H%M%S}"
        elif what == "action":
            base = runbook.action.removesuffix("_v2")
            runbook.action = base if runbook.action.endswith("_v2") else f"{base}_v2"
        else:
            runbook.enabled = not runbook.enabled
        note(f"  {runbook.name}: {what}")
        save_runbook(runbook, actor=self.world.supervisor, reason="test edit", now=self.now)

    def edit_policy(self, data: st.DataObject) -> None:
        """Switch the category's policy to shadow mode and back, or disable and enable it."""
        category = data.draw(st.sampled_from(CATEGORIES), label="category")
        what = data.draw(st.sampled_from(["mode", "enabled"]), label="field")
        policy = Policy.objects.filter(category=category).order_by("pk").first()
        if what == "mode":
            policy.mode = "enforce" if policy.mode == "shadow" else "shadow"
        else:
            policy.enabled = not policy.enabled
        note(f"  {policy.name}: mode {policy.mode}, enabled {policy.enabled}")
        try:
            save_policy(policy, actor=self.world.supervisor, reason="test edit", now=timezone.now())
        except ValidationError as error:
            note(f"  policy refused: {error}")

    def pause(self, data: st.DataObject) -> None:
        """Pause a category, a host or everything, until resumed or for some minutes."""
        scope = data.draw(st.sampled_from(["category", "host", "all"]), label="scope")
        minutes = data.draw(st.one_of(st.none(), st.integers(1, 240)), label="minutes")
        pause_automation(
            Pause(
                scope=scope,
                category=data.draw(st.sampled_from(CATEGORIES), label="category"),
                host=self.host(data.draw(st.integers(0, 1), label="host")),
                ends_at=self.now + timedelta(minutes=minutes) if minutes else None,
            ),
            actor=self.world.supervisor,
            reason="test pause",
            now=self.now,
        )

    def resume(self, data: st.DataObject) -> None:
        paused = Pause.objects.filter(resumed_at__isnull=True).order_by("pk")
        pause = self.draw_row(data, paused, "pause")
        resume_pause(pause, actor=self.world.supervisor, now=self.now, reason="go on")

    def cancel(self, data: st.DataObject) -> None:
        """A supervisor cancels an unfinished execution (or tries to cancel a finished one)."""
        execution = self.draw_row(data, Execution.objects.order_by("pk"), "execution")
        try:
            cancel_execution(
                execution, actor=self.world.supervisor, reason="test cancel", now=self.now
            )
            self.world.seen[f"cancelled from {execution.state}"] += 1
        except ExecutionError as error:
            note(f"  cancel refused: {error.code}")

    def close(self, data: st.DataObject) -> None:
        """A supervisor closes a ticket, resolved by hand or not."""
        ticket = self.draw_row(data, Ticket.objects.order_by("pk"), "ticket")
        resolved = data.draw(st.booleans(), label="resolved")
        try:
            close_ticket(
                ticket, actor=self.world.supervisor, resolved=resolved, reason="test", now=self.now
            )
        except ExecutionError as error:
            note(f"  close refused: {error.code}")

    verbs: dict[str, Callable[["GovernanceMachine", st.DataObject], None]] = {
        "sample": lambda self, data: self.sample(data),
        "problem": lambda self, data: self.sample(data, "problem"),
        "recover": lambda self, data: self.sample(data, "recover"),
        "poll": lambda self, data: self.poll(data),
        "poll idle": lambda self, data: self.poll(data, idle=True),
        "poll late": lambda self, data: self.poll(data, late=True),
        "report": lambda self, data: self.report(data),
        "late report": lambda self, data: self.report(data, late=True),
        "dispatch": lambda self, data: self.dispatch(data),
        "redeliver": lambda self, data: self.dispatch(data, redeliver=True),
        "sweep": lambda self, data: self.run_sweeper(data),
        "expire": lambda self, data: expire_approval_requests(self.now),
        "release": lambda self, data: release_held_executions(self.now),
        "approve": lambda self, data: self.approve(data),
        "reject": lambda self, data: self.reject(data),
        "edit runbook": lambda self, data: self.edit_runbook(data),
        "edit policy": lambda self, data: self.edit_policy(data),
        "pause": lambda self, data: self.pause(data),
        "resume": lambda self, data: self.resume(data),
        "cancel": lambda self, data: self.cancel(data),
        "close": lambda self, data: self.close(data),
        "advance time": lambda self, data: self.advance_time(data),
    }

    # ---- invariant 1: nothing reaches an agent that the rules would not allow -----------

    def check_run_allowed(self, action: AgentAction, state_before: str | None) -> None:
        """The test's own reading of the rules, at the instant the action was handed out."""
        execution = Execution.objects.select_related(
            "runbook", "host", "decision", "approval_request"
        ).get(pk=action.execution_id)
        runbook, category = execution.runbook, execution.runbook.category
        decision, request = execution.decision, execution.approval_request
        problems = []
        # A claim its agent never said it started is offered again, the same token; one
        # its agent started never is.
        if state_before not in ("dispatched", "claimed"):
            problems.append(f"it was {state_before}, not dispatched")
        if execution.pk in self.ran:
            problems.append("offered again after its agent started it")

        covering = [
            pause.describe()
            for pause in Pause.objects.filter(resumed_at__isnull=True)
            if (pause.ends_at is None or pause.ends_at > self.now)
            and (
                pause.scope == "all"
                or (pause.scope == "category" and pause.category == category)
                or (pause.scope == "host" and pause.host_id == execution.host_id)
            )
        ]
        if covering:
            problems.append(f"paused: {covering}")

        automatic = request is None
        if automatic and not (
            decision is not None
            and decision.outcome == "AUTO_HEAL"
            and decision.allowed
            and not decision.shadow
        ):
            problems.append("automatic, without an allowed AUTO_HEAL decision behind it")
        if automatic or (decision is not None and decision.policy_id and not decision.shadow):
            policy = Policy.objects.filter(category=category, enabled=True).first()
            if policy is None:
                problems.append(f"no enabled {category} policy")
            elif policy.mode != "enforce":
                problems.append(f"policy {policy.name} is in {policy.mode} mode")

        newest = (
            Runbook.history.filter(id=runbook.pk)
            .order_by("-history_id")
            .values_list("history_id", flat=True)
            .first()
        )
        if not runbook.enabled:
            problems.append(f"runbook {runbook.name} is disabled")
        if execution.runbook_version != newest:
            problems.append(f"runbook version {execution.runbook_version} decided, {newest} now")
        if action.action != execution.action:
            problems.append(f"sent {action.action}, recorded {execution.action}")
        decided_here = decision is not None and decision.runbook_id == runbook.pk
        if decided_here and action.action != decision.action:
            problems.append(f"sent {action.action}, decided {decision.action}")
        if request is not None:
            if request.status != "approved":
                problems.append(f"its approval request is {request.status}")
            if request.expires_at <= self.now:
                problems.append(f"its approval expired at {request.expires_at}")
            if request.runbook_version != execution.runbook_version:
                problems.append(f"approvers were shown version {request.runbook_version}")
        if not execution.host.enabled:
            problems.append("the host is disabled")
        newest_sample = (
            MetricSample.objects.filter(host_id=execution.host_id).order_by("-taken_at").first()
        )
        decided_sample = decision.sample_id if decision else None
        newer = newest_sample is not None and newest_sample.pk != decided_sample
        if newer and newest_sample.severity == 0:
            problems.append("the host's newest reading is healthy")
        assert not problems, (
            f"{action.action} (execution {execution.pk}) reached {execution.host.name} at "
            f"{self.now}, but: " + "; ".join(problems)
        )

    def check_rollback(self, action: AgentAction, state_before: str | None) -> None:
        execution = Execution.objects.select_related("runbook").get(pk=action.execution_id)
        assert state_before in ("rollback_pending", "rollback_claimed"), (
            f"rollback handed out from {state_before}"
        )
        expected = execution.rollback_action or execution.runbook.rollback_action
        assert action.action == expected, f"rollback sent {action.action}, recorded {expected}"

    # ---- invariant 2: every state change is on the record ------------------------------

    @staticmethod
    def audit_sequence() -> int:
        return AuditEvent.objects.order_by("-sequence").values_list("sequence", flat=True)[0]

    @invariant()
    def every_change_is_audited(self) -> None:
        rows = Rows.read()
        after = rows.states()
        events = list(
            AuditEvent.objects.filter(sequence__gt=self.last_audit).values_list(
                "sequence", "object_type", "object_id", "ticket_id"
            )
        )
        named = {(kind, object_id) for _, kind, object_id, _ in events}
        on_ticket = {ticket_id for *_, ticket_id in events if ticket_id}
        before = self.before.states()
        missing = []
        for key, value in after.items():
            old = before.get(key)
            if old == value:
                continue
            kind, pk = key
            if (kind, str(pk)) in named:
                continue
            if kind == "Ticket" and value[1] in on_ticket:
                # On the ticket's record through the event that moved it, which names the
                # ticket (an approval requested, rejected or expired; an execution queued
                # or cancelled), not through an event on the Ticket row itself: counted.
                move = f"{old[0] if old else 'new'} -> {value[0]}"
                self.world.seen[f"ticket {move} audited via ticket_id ({self.step_name})"] += 1
                continue
            missing.append(f"{kind} {pk}: {old} -> {value}")
        assert not missing, f"{self.step_name}: {missing} changed without an audit event"
        illegal = [
            f"{kind} {pk}: {before[kind, pk]} -> {value}"
            for (kind, pk), value in after.items()
            if (kind, pk) in before and not may_become(kind, before[kind, pk], value)
        ]
        assert not illegal, f"{self.step_name} made moves no transition allows: {illegal}"
        twice = rows.executions_sharing_an_approval_or_decision()
        assert not twice, f"{self.step_name}: one approval or decision, two executions: {twice}"
        self.check_tickets_agree(rows)
        self.before = rows
        self.last_audit = max((sequence for sequence, *_ in events), default=self.last_audit)
        self.summary = self.summarise(rows)

    def check_tickets_agree(self, rows: Rows) -> None:
        """A ticket's status says what is going on with it: remediating while something
        runs, awaiting approval while (and only while) a request waits, and nothing
        left running once it is resolved or closed."""
        running = Counter(
            execution.ticket for execution in rows.executions if execution.state not in FINISHED
        )
        pending = Counter(
            request.ticket for request in rows.requests if request.status == "pending"
        )
        problems = []
        for pk, status, ticket_id in rows.tickets:
            if status == "remediating" and not running[pk]:
                problems.append(f"{ticket_id} is remediating with nothing running")
            if (status == "awaiting_approval") != (pending[pk] == 1) or pending[pk] > 1:
                problems.append(f"{ticket_id} is {status} with {pending[pk]} pending requests")
            if status in ("resolved", "closed") and running[pk]:
                problems.append(f"{ticket_id} is {status} with {running[pk]} unfinished runs")
        assert not problems, f"{self.step_name}: {problems}"


@pytest.fixture
def world(db, approved_model, settings, monkeypatch, alice, bob, carol) -> World:
    """Two hosts with agents, a supervisor (alice) and two approvers (bob, carol)."""
    settings.WARDEN_MODEL_REFRESH_SECONDS = 3600  # one approved model throughout
    # Approvals that live an hour, not a day: time passing past an approval's life
    # between its dispatch and the agent's claim is then not rare.
    settings.WARDEN_APPROVAL_TTL_HOURS = 1
    hosts = [
        add_host(name, labels={"env": "test"}, now=timezone.now())[0]
        for name in ("web-01", "web-02")
    ]
    # The sweeper's requeue enqueues a dispatch task at once (not on commit), and tasks
    # run inline in tests (tests/conftest.py), on the real clock: the machine dispatches
    # by itself, on its own. (What is enqueued on commit never runs: nothing commits.)
    monkeypatch.setattr(rows_module, "async_task", lambda *args, **kwargs: None)
    return World(hosts=hosts, supervisor=alice, approvers=[alice, bob, carol])


def test_an_agent_gets_only_what_every_rule_allows_and_every_change_is_audited(world):
    GovernanceMachine.world = world
    began = time.monotonic()
    run_state_machine_as_test(
        GovernanceMachine,
        settings=hypothesis_settings(
            max_examples=MAX_EXAMPLES,
            stateful_step_count=STEPS_PER_EXAMPLE,
            deadline=None,
            database=None,  # nothing written in the working tree; a failure prints its blob
            print_blob=True,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        ),
    )
    seen = "\n".join(f"  {count:6d}  {what}" for what, count in sorted(world.seen.items()))
    print(
        f"\nrule state machine: {world.examples} examples, {world.steps} steps in "
        f"{time.monotonic() - began:.1f} s\n{seen}"
    )
    assert world.seen["agent got a run"], "no run reached an agent: the machine tests nothing"
