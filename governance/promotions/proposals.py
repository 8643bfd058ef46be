"""Proposals one step up: where a track record earned more autonomy, Warden proposes it
with the numbers, and people accept or dismiss it (governance.promotions.actions).

    propose_promotions(now)   the warden-autonomy schedule (governance.tasks)
      each enabled, enforcing policy, and each lowered pattern whose policy stands higher
      -> its fixes and feedback since it reached its level -> autonomy.promotion_for
      -> an AutonomyProposal with the numbers, who stands behind them (records.backing)
         and the version of its target they were computed on ("autonomy.proposed"),
         superseding an open one that no longer holds or whose target was edited since
         ("autonomy.superseded")
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Q

from feedback.models import Pattern
from governance.audit.log import PendingEvent, append_events, event, user_actor
from governance.choices import PolicyMode
from governance.models import AutonomyProposal, PatternAutonomy, Policy, ProposalStatus
from governance.policies.shadow import thresholds
from governance.promotions.records import (
    backing,
    level_since,
    pattern_name,
    policy_rung,
    target_version,
    track_record,
)
from governance.rules import autonomy
from remediation.models import Execution


def propose_promotions(now: datetime) -> int:
    """Propose one step up wherever a track record earned it; returns how many were made.

    Safe to run any number of times: an open proposal that still holds is kept, one that
    no longer does is superseded. One short transaction per policy or pattern.
    """
    made = 0
    policies = Policy.objects.filter(
        Q(enabled=True, mode=PolicyMode.ENFORCE) | Q(proposals__status=ProposalStatus.PROPOSED)
    ).distinct()
    for pk in policies.values_list("pk", flat=True):
        with transaction.atomic():
            made += _propose_for_policy(pk, now)
    patterns = Pattern.objects.filter(
        Q(autonomy__autonomy_level__lt=autonomy.L3)
        | Q(autonomy_proposals__status=ProposalStatus.PROPOSED)
    ).distinct()
    for pk in patterns.values_list("pk", flat=True):
        with transaction.atomic():
            made += _propose_for_pattern(pk, now)
    return made


@dataclass(frozen=True)
class Computed:
    """A step a track record earned, who stands behind it, and the version of the policy
    (or pattern level) it was computed on."""

    proposal: autonomy.Proposal
    backing: dict[str, Any]
    version: int | None


def _propose_for_policy(pk: int, now: datetime) -> int:
    policy = Policy.objects.select_for_update().get(pk=pk)
    computed = None
    if policy.enabled and policy.mode == PolicyMode.ENFORCE:
        fixes, since = Execution.objects.filter(decision__policy=policy), level_since(policy)
        record = track_record(fixes, since, service_weight=policy.service_feedback_weight)
        proposal = autonomy.promotion_for(record, thresholds(), policy_rung(policy))
        if proposal is not None:
            computed = Computed(proposal, backing(fixes, since), target_version(policy))
    current = policy.proposals.filter(status=ProposalStatus.PROPOSED).first()
    return _settle(current, computed, {"policy": policy}, f"policy {policy.name}", now)


def _propose_for_pattern(pk: int, now: datetime) -> int:
    pattern = Pattern.objects.get(pk=pk)
    policy = Policy.objects.filter(category=pattern.category, enabled=True).first()
    row = PatternAutonomy.objects.select_for_update().filter(pattern=pattern).first()
    computed = None
    # Raising a pattern above its policy would change nothing: it waits for the policy.
    if row is not None and policy is not None and policy.autonomy_level > row.autonomy_level:
        fixes = Execution.objects.filter(ticket__pattern=pattern)
        record = track_record(fixes, row.changed_at, service_weight=policy.service_feedback_weight)
        proposal = autonomy.promotion_for(
            record, thresholds(), autonomy.Rung(row.autonomy_level), approval_step=False
        )
        if proposal is not None:
            computed = Computed(proposal, backing(fixes, row.changed_at), target_version(row))
    current = pattern.autonomy_proposals.filter(status=ProposalStatus.PROPOSED).first()
    return _settle(current, computed, {"pattern": pattern}, pattern_name(pattern), now)


def _settle(
    current: AutonomyProposal | None,
    computed: Computed | None,
    target: dict[str, Any],
    name: str,
    now: datetime,
) -> int:
    """Keep, supersede or make the target's open proposal; returns 1 if one was made."""
    events: list[PendingEvent] = []
    proposal = computed.proposal if computed is not None else None
    if current is not None:
        if computed is not None and _same_step(current, computed):
            return 0  # still holds
        if proposal is None:
            why = f"{name}'s record no longer earns it, or it changed since"
        elif proposal.current.level != current.from_level:
            why = f"{name} now stands at L{proposal.current.level}"
        else:
            why = f"{name} was edited since the proposal was computed: its numbers are recomputed"
        close_proposal(current, ProposalStatus.SUPERSEDED, None, now, why, events)
    made = 0
    if proposal is not None:
        row = AutonomyProposal.objects.create(
            **target,
            change=proposal.change,
            from_level=proposal.current.level,
            to_level=proposal.proposed.level,
            numbers=dict(proposal.numbers),
            backing=computed.backing,
            target_version=computed.version,
            summary=f"{name}: {proposal.summary}"[:500],
            created_at=now,
        )
        events.append(
            event(
                "system",
                "autonomy.proposed",
                row,
                f"proposed one step more autonomy for {row.summary}",
                data={
                    "target": name,
                    "change": row.change,
                    "numbers": row.numbers,
                    "backing": row.backing,
                    "target_version": row.target_version,
                },
            )
        )
        made = 1
    append_events(events)
    return made


def _same_step(current: AutonomyProposal, computed: Computed) -> bool:
    """The same step, computed on the same version of its target: a policy edited since
    (even one raised and lowered back) makes it a new proposal."""
    proposal = computed.proposal
    return (current.change, current.from_level, current.to_level, current.target_version) == (
        proposal.change,
        proposal.current.level,
        proposal.proposed.level,
        computed.version,
    )


def close_proposal(
    proposal: AutonomyProposal,
    status: str,
    actor: Any,
    now: datetime,
    why: str,
    events: list[PendingEvent],
) -> None:
    """Close an open, locked `proposal` as `status` (dismissed by `actor`, or superseded
    by the system with None), saying why; its event joins `events`."""
    proposal.status = status
    proposal.decided_by = actor
    proposal.decided_at = now
    proposal.note = why[:500]
    proposal.save(update_fields=["status", "decided_by", "decided_at", "note"])
    events.append(
        event(
            user_actor(actor),
            f"autonomy.{status}",
            proposal,
            f"proposal #{proposal.pk} ({proposal}) {status}: {why}",
            data={"status": status},
        )
    )


def supersede_open(target: dict[str, Any], why: str, now: datetime, events: list) -> None:
    """Supersede the open proposals of `target` ({"policy": ...} or {"pattern": ...})."""
    for proposal in AutonomyProposal.objects.select_for_update().filter(
        status=ProposalStatus.PROPOSED, **target
    ):
        close_proposal(proposal, ProposalStatus.SUPERSEDED, None, now, why, events)
