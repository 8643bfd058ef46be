"""Autonomy proposals: read-only, accepted or dismissed by the admin actions."""

from django.contrib import admin
from django.utils import timezone
from django.utils.html import format_html, format_html_join

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

    list_display = [
        "created_at",
        "target",
        "step",
        "summary",
        "who_stands_behind",
        "status",
        "decided_by",
    ]
    list_filter = ["status", "change"]
    list_select_related = ["policy", "pattern", "decided_by"]
    search_fields = ["policy__name", "summary"]
    ordering = ["-created_at"]
    fields = [
        "target",
        "step",
        "cautions",
        "summary",
        "numbers",
        "accounts",
        "how_verified",
        "computed_on",
        "status",
        "created_at",
        "decided_by",
        "decided_at",
        "note",
    ]
    readonly_fields = ["target", "step", "cautions", "accounts", "how_verified", "computed_on"]
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

    @admin.display(description="Who stands behind it")
    def who_stands_behind(self, obj: AutonomyProposal) -> str:
        backing = obj.backing or {}
        if not backing:
            return "not recorded (proposed before it was)"
        people, services = backing.get("people", 0), backing.get("services", 0)
        said = f"{people} {'person' if people == 1 else 'people'}, {services} service account(s)"
        warnings = len(backing.get("warnings", []))
        return f"{said}; {warnings} caution(s)" if warnings else said

    @admin.display(description="Before you accept")
    def cautions(self, obj: AutonomyProposal) -> str:
        backing = obj.backing or {}
        if not backing:
            return (
                "Who stands behind these numbers was not recorded: this proposal was made "
                "before it was, and cannot be accepted; the next proposal run remakes it."
            )
        warnings = backing.get("warnings", [])
        if not warnings:
            return (
                "Nothing: its feedback comes from enough people, and the host's own "
                "readings verified its fixes."
            )
        return format_html(
            "<ul>{}</ul>",
            format_html_join("", "<li><strong>{}</strong></li>", ((w,) for w in warnings)),
        )

    @admin.display(description="People and service accounts behind the numbers")
    def accounts(self, obj: AutonomyProposal) -> str:
        rows = (obj.backing or {}).get("accounts", [])
        if not rows:
            return "nobody: no feedback or approval on these fixes"
        return format_html(
            "<table><tr><th>account</th><th>kind</th><th>verdicts (positive)</th>"
            "<th>approvals</th></tr>{}</table>",
            format_html_join(
                "",
                "<tr><td>{}</td><td>{}</td><td>{} ({})</td><td>{}</td></tr>",
                (
                    (
                        row["username"],
                        "service account" if row["service"] else "person",
                        row["feedback"],
                        row["positive"],
                        row["approvals"],
                    )
                    for row in rows
                ),
            ),
        )

    @admin.display(description="How its fixes were verified")
    def how_verified(self, obj: AutonomyProposal) -> str:
        verified = (obj.backing or {}).get("verified")
        if not verified:
            return "not recorded"
        return (
            f"{verified['readings']} by the host's own readings, {verified['alert']} by an "
            f"alert's resolution, {verified['other']} otherwise"
        )

    @admin.display(description="Computed on")
    def computed_on(self, obj: AutonomyProposal) -> str:
        what = "the policy" if obj.policy_id else "the pattern's level"
        if obj.target_version is None:
            return f"an unrecorded version of {what}: it cannot be accepted"
        return f"version {obj.target_version} of {what}: accepting refuses if it changed since"
