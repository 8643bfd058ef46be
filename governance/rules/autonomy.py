"""Autonomy earned and lost, as plain functions over values: no ORM, no clock.

The seed's progression: people approve the first 20-30 occurrences; after 20+ at 90%+
success, with positive feedback and very high confidence, the automation may do more.
Here that becomes one step up a ladder, proposed to a supervisor with its numbers:

    L1 (a person approves) -> L2 (acts, people notified) -> L3 (acts, a supervisor can
    override) -> L3 with approval no longer needed (policies only)

L0 (manual) is people's choice and is never proposed away. Losing autonomy needs no
click: two failed or rolled-back automatic fixes within a window, or feedback below the
policy's minimum, put a policy or pattern back on L1 at once (the seed's "disable
patterns with declining success rates").

- promotion_for: the step a track record has earned, with its numbers, or None;
- demotion_for: why a policy or pattern goes back to L1 now, or None;
- shadow_agreement: how often people's later verdicts agreed with a shadow policy's
  decisions, and enforce_refusal: why that is not yet enough to enforce it.

governance/promotions/actions.py reads the database into these values and acts on the answers.
"""

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from governance.choices import AutonomyLevel

L1 = AutonomyLevel.L1_ASSISTED.value
L2 = AutonomyLevel.L2_CONDITIONAL.value
L3 = AutonomyLevel.L3_BOUNDED.value
# governance.models.ProposalChange's values (models are not imported here).
RAISE_LEVEL = "raise_level"
DROP_APPROVAL = "drop_approval"
FAILURES = "failures"
FEEDBACK = "feedback"


@dataclass(frozen=True)
class Rung:
    """Where a policy or pattern stands on the ladder."""

    level: int  # 0-3
    requires_approval: bool = True  # a pattern's cap carries no approval rule: always True


@dataclass(frozen=True)
class Thresholds:
    """The seed's numbers (settings WARDEN_PROMOTION_*, WARDEN_DEMOTION_*, WARDEN_SHADOW_*)."""

    min_fixes: int = 20
    min_success_rate: float = 0.9
    min_positive_rate: float = 0.85
    min_reliability: float = 90.0  # the seed's "very high confidence" (0-100)
    demotion_failures: int = 2
    demotion_window: timedelta = timedelta(hours=24)
    shadow_min_agreement: float = 0.9
    shadow_min_cases: int = 20

    def as_numbers(self) -> dict[str, Any]:
        return {
            "min_fixes": self.min_fixes,
            "min_success_rate": self.min_success_rate,
            "min_positive_rate": self.min_positive_rate,
            "min_reliability": self.min_reliability,
        }


def next_step(rung: Rung, *, approval_step: bool = True) -> tuple[str, Rung] | None:
    """The one step up from `rung` (RAISE_LEVEL or DROP_APPROVAL, and where it leads), or
    None at the top or at L0. `approval_step`: whether dropping approval is a step (a
    pattern has no approval rule of its own, so its ladder ends at L3)."""
    if rung.level in (L1, L2):
        return RAISE_LEVEL, Rung(rung.level + 1, rung.requires_approval)
    if rung.level == L3 and approval_step and rung.requires_approval:
        return DROP_APPROVAL, Rung(L3, requires_approval=False)
    return None


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole > 0 else None


@dataclass(frozen=True)
class TrackRecord:
    """The fixes decided at a policy's or pattern's current level, and what people said."""

    since: datetime | None  # when it reached its level (None: as far back as recorded)
    fixes: int  # ended: verified, failed, rolled back, or stopped while running
    succeeded: int  # verified by fresh metrics (and not rolled back since)
    feedback: int  # people's feedback on those fixes' tickets
    positive: int
    reliability: float | None  # the mean reliability score of the decisions behind them

    @property
    def success_rate(self) -> float | None:
        return _rate(self.succeeded, self.fixes)

    @property
    def positive_rate(self) -> float | None:
        return _rate(self.positive, self.feedback)

    def numbers(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat() if self.since else None,
            "fixes": self.fixes,
            "succeeded": self.succeeded,
            "success_rate": self.success_rate,
            "feedback": self.feedback,
            "positive": self.positive,
            "positive_rate": self.positive_rate,
            "reliability": self.reliability,
        }

    def line(self) -> str:
        """'24 fixes, 23 verified (96%); 10 of 10 feedback positive (100%); reliability 91.2'"""
        success = self.success_rate
        positive = self.positive_rate
        reliability = "unknown" if self.reliability is None else f"{self.reliability:.1f}"
        return (
            f"{self.fixes} fixes, {self.succeeded} verified"
            f"{f' ({success:.0%})' if success is not None else ''}; "
            f"{self.positive} of {self.feedback} feedback positive"
            f"{f' ({positive:.0%})' if positive is not None else ''}; "
            f"mean reliability {reliability}"
        )


@dataclass(frozen=True)
class Proposal:
    """One step up, earned by `record`."""

    change: str  # RAISE_LEVEL | DROP_APPROVAL
    current: Rung
    proposed: Rung
    numbers: Mapping[str, Any] = field(default_factory=dict)
    summary: str = ""


def _at_least(value: float | None, minimum: float) -> bool:
    return value is not None and math.isfinite(value) and value >= minimum


def promotion_for(
    record: TrackRecord, thresholds: Thresholds, current: Rung, *, approval_step: bool = True
) -> Proposal | None:
    """The step `record` has earned from `current`, or None.

    Earned: at least `min_fixes` fixes since the level was reached, at least
    `min_success_rate` of them verified, some feedback with at least `min_positive_rate`
    of it positive, and the decisions' mean reliability at least `min_reliability`.
    """
    step = next_step(current, approval_step=approval_step)
    if step is None:
        return None
    change, proposed = step
    earned = (
        record.fixes >= max(thresholds.min_fixes, 1)
        and _at_least(record.success_rate, thresholds.min_success_rate)
        and _at_least(record.positive_rate, thresholds.min_positive_rate)
        and _at_least(record.reliability, thresholds.min_reliability)
    )
    if not earned:
        return None
    what = (
        "approval no longer needed at L3"
        if change == DROP_APPROVAL
        else f"L{current.level} to L{proposed.level}"
    )
    since = f"since {record.since.astimezone(UTC):%Y-%m-%d %H:%M} UTC, " if record.since else ""
    return Proposal(
        change=change,
        current=current,
        proposed=proposed,
        numbers={**record.numbers(), "thresholds": thresholds.as_numbers()},
        summary=f"{what}: {since}{record.line()}",
    )


@dataclass(frozen=True)
class Outcome:
    """How one automatic fix ended, and when."""

    execution_id: int
    at: datetime
    failed: bool  # failed, rolled back, or stopped while running


@dataclass(frozen=True)
class FeedbackShare:
    given: int
    positive: int

    @property
    def rate(self) -> float | None:
        return _rate(self.positive, self.given)


@dataclass(frozen=True)
class Demotion:
    """Back to L1 now, and why."""

    cause: str  # FAILURES | FEEDBACK
    current: Rung
    lowered: Rung
    reason: str
    numbers: Mapping[str, Any] = field(default_factory=dict)


def demotion_for(
    outcomes: Iterable[Outcome],
    feedback: FeedbackShare | None,
    current: Rung,
    *,
    minimum_positive_rate: float,
    thresholds: Thresholds,
    now: datetime,
    since: datetime | None = None,
) -> Demotion | None:
    """Why a policy or pattern at `current` goes back to L1 at `now`, or None.

    Failures: at least `demotion_failures` automatic fixes failed or were rolled back in
    the window before `now` (counted from `since`, when the level was reached, if later:
    a level starts with a clean slate). Feedback: the positive share of `feedback` is
    below `minimum_positive_rate` (the policy's minimum; none given says nothing).
    At L1 or below there is nothing to lower.
    """
    if current.level <= L1:
        return None
    lowered = Rung(L1, requires_approval=True)
    start = now - thresholds.demotion_window
    if since is not None and since > start:
        start = since
    failed = sorted(
        (o for o in outcomes if o.failed and start <= o.at <= now),
        key=lambda o: (o.at, o.execution_id),
    )
    needed = max(thresholds.demotion_failures, 1)
    hours = thresholds.demotion_window.total_seconds() / 3600
    if len(failed) >= needed:
        ids = ", ".join(f"#{o.execution_id}" for o in failed)
        return Demotion(
            cause=FAILURES,
            current=current,
            lowered=lowered,
            reason=(
                f"{len(failed)} automatic fixes failed or were rolled back within {hours:g} h "
                f"(executions {ids}); the limit is {needed - 1}"
            ),
            numbers={
                "failed": len(failed),
                "executions": [o.execution_id for o in failed],
                "window_hours": hours,
                "limit": needed - 1,
            },
        )
    rate = feedback.rate if feedback is not None else None
    if rate is not None and rate < minimum_positive_rate:
        return Demotion(
            cause=FEEDBACK,
            current=current,
            lowered=lowered,
            reason=(
                f"positive feedback fell to {rate:.0%} ({feedback.positive} of "
                f"{feedback.given}), below the policy's minimum {minimum_positive_rate:.0%}"
            ),
            numbers={
                "feedback": feedback.given,
                "positive": feedback.positive,
                "positive_rate": rate,
                "minimum": minimum_positive_rate,
            },
        )
    return None


@dataclass(frozen=True)
class ShadowDecision:
    """What a policy in shadow mode would have done about a ticket."""

    ticket: int | str  # the ticket's key
    decided_at: datetime


@dataclass(frozen=True)
class Verdict:
    """A person's later word on a ticket."""

    ticket: int | str
    given_at: datetime
    agrees: bool | None  # None: it says nothing about the decision (verdict_agrees)


def verdict_agrees(feedback_type: str, resolution_accurate: bool | None) -> bool | None:
    """Whether a piece of feedback agrees with the decision made on its ticket.

    "Resolution accurate" answers exactly that when it is given; otherwise positive
    feedback agrees, negative disagrees, and neutral says nothing.
    """
    if resolution_accurate is not None:
        return resolution_accurate
    return {"positive": True, "negative": False}.get(feedback_type)


@dataclass(frozen=True)
class Agreement:
    cases: int  # tickets with a shadow decision and a later verdict
    agreed: int

    @property
    def share(self) -> float | None:
        return _rate(self.agreed, self.cases)

    def line(self) -> str:
        """'14 of 16 cases agreed (88%)', or 'no cases yet'."""
        if not self.cases:
            return "no cases yet (no shadow decision has had people's feedback)"
        return f"{self.agreed} of {self.cases} cases agreed ({self.share:.0%})"


def shadow_agreement(decisions: Iterable[ShadowDecision], verdicts: Iterable[Verdict]) -> Agreement:
    """How often people's later verdicts agreed with a shadow policy's decisions.

    One case per ticket: its first verdict that says something, given at or after its
    first shadow decision. Tickets without such a verdict are no case, and a verdict given
    before any shadow decision judged something else.
    """
    decided: dict[int | str, list[datetime]] = {}
    for decision in decisions:
        decided.setdefault(decision.ticket, []).append(decision.decided_at)
    heard: dict[int | str, list[Verdict]] = {}
    for verdict in verdicts:
        if verdict.agrees is not None and verdict.ticket in decided:
            heard.setdefault(verdict.ticket, []).append(verdict)
    cases = agreed = 0
    for ticket, said in heard.items():
        first = min(decided[ticket])
        later = sorted((v for v in said if v.given_at >= first), key=lambda v: v.given_at)
        if later:
            cases += 1
            agreed += int(bool(later[0].agrees))
    return Agreement(cases, agreed)


def enforce_refusal(agreement: Agreement, thresholds: Thresholds) -> str | None:
    """Why a shadow policy may not be switched to enforce yet, or None if it may."""
    enough_cases = agreement.cases >= thresholds.shadow_min_cases
    if enough_cases and _at_least(agreement.share, thresholds.shadow_min_agreement):
        return None
    return (
        "Switching to enforce needs people's later verdicts to agree with at least "
        f"{thresholds.shadow_min_agreement:.0%} of the shadow decisions over at least "
        f"{thresholds.shadow_min_cases} cases; so far {agreement.line()}. Tick "
        '"override shadow agreement" and give the reason to switch anyway.'
    )
