"""Autonomy lost at once: a failed automatic fix, or people's feedback, can put a policy
or a pattern back to L1 in the transaction where it happened.

    demote_after_failure(execution)  remediation, in the transaction where an automatic
      fix failed, was stopped while running, or a supervisor rolled one back; failures
      judged on time only on hosts whose clocks are flagged demote nothing
    demote_after_feedback(feedback)  feedback.actions and a flagged review, in the
      feedback's transaction
      -> autonomy.demotion_for -> back to L1 ("policy.demoted" / "pattern.demoted", with
         the ticket, so governance.notices tells the supervisors why), and any open
         proposal to raise it superseded

Lock order: the execution (caller), then the policy, then the pattern's level.
"""

from datetime import datetime

from django.db.models import QuerySet

from feedback.models import Feedback, Pattern
from governance.audit.changes import record_change
from governance.audit.log import PendingEvent
from governance.models import PatternAutonomy, Policy
from governance.policies.actions import save_policy
from governance.policies.shadow import thresholds
from governance.promotions.proposals import supersede_open
from governance.promotions.records import (
    category_feedback,
    ended_badly,
    level_since,
    pattern_feedback,
    pattern_name,
    pattern_rung,
    policy_rung,
)
from governance.rules import autonomy
from remediation.choices import VerifiedBy
from remediation.models import Execution, Host
from scoring.samples import clock_is_off

# A verification failure judged by time: the host's readings, or no healthy one in time.
TIME_JUDGED = frozenset({VerifiedBy.READINGS, VerifiedBy.DEADLINE})


def demote_after_failure(
    execution: Execution, now: datetime, events: list[PendingEvent]
) -> list[autonomy.Demotion]:
    """An automatic fix failed, was stopped while running, or a supervisor is rolling it
    back: lower its policy and its pattern to L1 if the window now holds too many such.

    Expects the caller's transaction with `execution` locked and in its new state (saved
    or not); the events join the caller's `events`. Returns the demotions made.
    """
    if execution.approval_request_id is not None:
        return []  # people approved it: a failure of theirs, not of the automation
    ticket = execution.ticket
    decision = execution.decision
    policy = (
        Policy.objects.select_for_update().filter(pk=decision.policy_id).first()
        if decision is not None and decision.policy_id
        else None
    )
    limits = thresholds()
    recent = ended_badly(
        Execution.objects.filter(
            approval_request__isnull=True, state_changed_at__gte=now - limits.demotion_window
        ).exclude(pk=execution.pk)
    )
    this = (execution.pk, now, on_a_skewed_clock(execution.verified_by, execution.host))

    def outcomes(executions: QuerySet[Execution]) -> list[autonomy.Outcome]:
        rows = executions.values_list(
            "pk", "state_changed_at", "verified_by", "host__clock_skew_seconds"
        )
        failures = [(pk, at, judged_on_skewed_clock(by, skew)) for pk, at, by, skew in rows]
        failures.append(this)
        if all(skewed for _, _, skewed in failures):
            # No host's clock can demote a policy: failures judged on time, each on a host
            # whose clock is flagged, count only beside one from a host whose clock is right.
            return []
        return [autonomy.Outcome(pk, at, failed=True) for pk, at, _ in failures]

    made = []
    pattern_demotion = None
    if ticket.pattern_id is not None:
        row = PatternAutonomy.objects.select_for_update().filter(pattern=ticket.pattern_id).first()
        pattern_demotion = autonomy.demotion_for(
            outcomes(recent.filter(ticket__pattern=ticket.pattern_id)),
            None,
            pattern_rung(policy, row),
            minimum_positive_rate=0.0,
            thresholds=limits,
            now=now,
            since=row.changed_at if row is not None else None,
        )
    if policy is not None:
        demotion = autonomy.demotion_for(
            outcomes(recent.filter(decision__policy=policy)),
            None,
            policy_rung(policy),
            minimum_positive_rate=0.0,
            thresholds=limits,
            now=now,
            since=level_since(policy),
        )
        if demotion is not None:
            _demote_policy(policy, demotion, ticket.ticket_id, now, events)
            made.append(demotion)
    if pattern_demotion is not None:
        _demote_pattern(ticket.pattern, pattern_demotion, ticket.ticket_id, now, events)
        made.append(pattern_demotion)
    return made


def judged_on_skewed_clock(verified_by: str, skew_seconds: float | None) -> bool:
    """Was this failure judged on time (its readings, or the verification deadline) on a
    host whose clock is flagged (scoring.samples.clock_is_off)? Readings are judged on the
    server's clock, but a clock that far off is reason enough not to let it alone demote."""
    return verified_by in TIME_JUDGED and clock_is_off(skew_seconds)


def on_a_skewed_clock(verified_by: str, host: Host) -> bool:
    return judged_on_skewed_clock(verified_by, host.clock_skew_seconds)


def demote_after_feedback(
    feedback: Feedback, now: datetime, events: list[PendingEvent]
) -> list[autonomy.Demotion]:
    """A person's feedback may take the positive share below the policy's minimum: then
    the category's policy, or the ticket's pattern, goes back to L1 at once.

    Expects the caller's transaction, after the feedback was counted on the pattern.
    """
    ticket = feedback.ticket
    policy = (
        Policy.objects.select_for_update().filter(category=ticket.category, enabled=True).first()
    )
    if policy is None:
        return []
    limits = thresholds()
    minimum = policy.min_positive_feedback_rate
    made = []
    pattern_demotion = None
    if ticket.pattern_id is not None:
        row = PatternAutonomy.objects.select_for_update().filter(pattern=ticket.pattern_id).first()
        pattern = Pattern.objects.get(pk=ticket.pattern_id)
        pattern_demotion = autonomy.demotion_for(
            [],
            pattern_feedback(pattern),
            pattern_rung(policy, row),
            minimum_positive_rate=minimum,
            thresholds=limits,
            now=now,
        )
    demotion = autonomy.demotion_for(
        [],
        category_feedback(ticket.category, now),
        policy_rung(policy),
        minimum_positive_rate=minimum,
        thresholds=limits,
        now=now,
    )
    if demotion is not None:
        _demote_policy(policy, demotion, ticket.ticket_id, now, events)
        made.append(demotion)
    if pattern_demotion is not None:
        _demote_pattern(pattern, pattern_demotion, ticket.ticket_id, now, events)
        made.append(pattern_demotion)
    return made


def _lowered_from(rung: autonomy.Rung) -> str:
    approval = "" if rung.requires_approval else " without approval"
    return f"L{rung.level}{approval}"


def _demote_policy(
    policy: Policy, demotion: autonomy.Demotion, ticket_id: str, now: datetime, events: list
) -> None:
    policy.autonomy_level = demotion.lowered.level
    policy.requires_approval = demotion.lowered.requires_approval
    save_policy(
        policy,
        actor=None,
        reason=demotion.reason,
        now=now,
        action="policy.demoted",
        headline=(
            f"policy {policy.name} lowered from {_lowered_from(demotion.current)} to "
            f"L{demotion.lowered.level} (a person approves every action)"
        ),
        data={
            "cause": demotion.cause,
            "from": demotion.current.level,
            "to": demotion.lowered.level,
            "numbers": dict(demotion.numbers),
        },
        ticket_id=ticket_id,
        events=events,
    )
    supersede_open({"policy": policy}, f"policy {policy.name} was lowered to L1", now, events)


def _demote_pattern(
    pattern: Pattern, demotion: autonomy.Demotion, ticket_id: str, now: datetime, events: list
) -> None:
    row = PatternAutonomy.objects.select_for_update().filter(pattern=pattern).first()
    row = row or PatternAutonomy(pattern=pattern)
    row.autonomy_level = demotion.lowered.level
    row.changed_at = now
    row.reason = demotion.reason[:500]
    name = pattern_name(pattern)
    record_change(
        row,
        actor=None,
        reason=demotion.reason,
        action="pattern.demoted",
        headline=(
            f"{name} lowered from {_lowered_from(demotion.current)} to "
            f"L{demotion.lowered.level} (a person approves its fixes)"
        ),
        data={
            "cause": demotion.cause,
            "pattern": pattern.pk,
            "from": demotion.current.level,
            "to": demotion.lowered.level,
            "numbers": dict(demotion.numbers),
        },
        ticket_id=ticket_id,
        events=events,
    )
    supersede_open({"pattern": pattern}, f"{name} was lowered to L1", now, events)
