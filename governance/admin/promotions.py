"""Autonomy proposals: read-only, accepted or dismissed by the admin actions."""

from django.contrib import admin
from django.utils import timezone

from config.admin_actions import confirmed_action
from governance.admin.base import ReadOnlyAdmin
from governance.audit import permissions
from governance.models import AutonomyProposal
from governance.promotions.actions import accept_proposal, dismiss_proposal


def _accept(proposal: AutonomyProposal, user, note: str) -> str:
    accepted = accept_proposal(proposal, actor=user, reason=note, now=timezone.now())
    return f"Accepted: {accepted.target_name()} moved {accepted.step_label()}."


def _dismiss(proposal: AutonomyProposal, user, note: str) -> str:
    dismiss_proposal(proposal, actor=user, reason=note, now=timezone.now())
    return f"Dismissed: {proposal}."


@admin.register(AutonomyProposal)
class AutonomyProposalAdmin(ReadOnlyAdmin):
    """Proposals one step up (governance.promotions.proposals): read-only, decided by the
    actions (governance.promotions.actions)."""

    list_display = ["created_at", "target", "step", "summary", "status", "decided_by"]
    list_filter = ["status", "change"]
    list_select_related = ["policy", "pattern", "decided_by"]
    search_fields = ["policy__name", "summary"]
    ordering = ["-created_at"]
    fields = [
        "target",
        "step",
        "summary",
        "numbers",
        "status",
        "created_at",
        "decided_by",
        "decided_at",
        "note",
    ]
    readonly_fields = ["target", "step"]
    actions = [
        confirmed_action(
            description="Accept: take the proposed step",
            verb="accept",
            perform=_accept,
            permissions=("decide",),
        ),
        confirmed_action(
            description="Dismiss (say why)",
            verb="dismiss",
            perform=_dismiss,
            permissions=("decide",),
        ),
    ]

    def has_decide_permission(self, request) -> bool:
        # The admin actions only show to those who may decide; the actions check again.
        return request.user.has_perm(permissions.DECIDE_PROPOSAL)

    @admin.display(description="Policy or pattern")
    def target(self, obj: AutonomyProposal) -> str:
        return obj.target_name()

    @admin.display(description="Step", ordering="from_level")
    def step(self, obj: AutonomyProposal) -> str:
        return obj.step_label()
