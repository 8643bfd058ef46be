import shlex
from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.contrib.auth.models import Group, User
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.http import HttpResponseBadRequest, StreamingHttpResponse
from django.urls import path
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from knox.models import AuthToken

from config.admin_actions import NeverDeleted, confirmed_action
from governance.admin_governed import GovernedAdmin, ReadOnlyHistoryAdmin, ReasonForm
from governance.approvals.actions import approve_request, reject_request
from governance.audit import permissions
from governance.audit.log import verify_audit_log
from governance.decisions.simulation import AUTO_HEALED, BLOCKED, TO_A_PERSON, simulate_policy
from governance.exports.records import FORMATS, stream
from governance.models import (
    AUTONOMY_LEVEL_REFUSED,
    WEEKDAYS,
    Approval,
    ApprovalRequest,
    ApprovalStatus,
    AuditEvent,
    AutonomyProposal,
    Decision,
    Pause,
    Policy,
)
from governance.pauses.actions import (
    active_pauses,
    is_active,
    pause_automation,
    resume_automation,
)
from governance.people.access import (
    access_of,
    permissions_of,
    record_access_change,
    record_group_change,
)
from governance.people.tokens import revoke_api_token
from governance.policies.actions import (
    OVERRIDE_FIELD,
    enforce_check,
    save_policy,
    shadow_agreement_of,
    thresholds,
)
from governance.promotions.actions import accept_proposal, dismiss_proposal
from governance.rules import labels
from remediation.choices import ActionType


def labelled(label: str, code: Any) -> SafeString:
    """A label to read, with the code it stands for on hover (to search the audit or API)."""
    return format_html('<span title="{}">{}</span>', code, label)


def labelled_filter(
    field: str, title: str, label: Callable[[Any], str]
) -> type[admin.SimpleListFilter]:
    """A list filter on `field` offering the values stored, each by its label.

    Its parameter is Django's own (`field__exact`), so links and exports made with the
    plain field filter keep working.
    """

    class LabelledFilter(admin.SimpleListFilter):
        parameter_name = f"{field}__exact"

        def lookups(self, request, model_admin) -> list[tuple[str, str]]:
            values = model_admin.get_queryset(request).order_by().values_list(field, flat=True)
            return sorted(((str(v), label(v)) for v in values.distinct()), key=lambda o: o[1])

        def queryset(self, request, queryset):
            return queryset.filter(**{field: self.value()}) if self.value() else queryset

    LabelledFilter.title = title
    return LabelledFilter


class ListOfNames(forms.CharField):
    """A list of names typed as text, one per line or separated by commas."""

    widget = forms.Textarea(attrs={"rows": 3, "cols": 60})

    def prepare_value(self, value):
        return "\n".join(value) if isinstance(value, list) else value

    def to_python(self, value):
        text = super().to_python(value) or ""
        return [
            item.strip() for line in text.splitlines() for item in line.split(",") if item.strip()
        ]


class PolicyForm(ReasonForm):
    allowed_action_types = forms.MultipleChoiceField(
        choices=ActionType.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="None ticked: any action type.",
    )
    allowed_days = forms.MultipleChoiceField(
        choices=[(day, day.capitalize()) for day in WEEKDAYS],
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="None ticked: every day.",
    )
    allowed_systems = ListOfNames(required=False, help_text="One per line. Empty: any system.")
    approvers = ListOfNames(
        required=False, help_text="User names or emails, one per line. Empty: any approver."
    )
    forbidden_commands = ListOfNames(
        required=False,
        help_text="Words added to the built-in floor, one per line (the floor always applies).",
    )
    override_shadow_agreement = forms.BooleanField(
        required=False,
        label="Override shadow agreement",
        help_text=(
            "Switch from shadow to enforce although people's verdicts have not yet agreed "
            "with enough of its decisions; the reason below is recorded as the override's."
        ),
    )

    class Meta:
        model = Policy
        fields = "__all__"

    def clean(self) -> dict:
        cleaned = super().clean()
        if self.instance.pk is not None and "mode" in cleaned:
            # Checked here too so the page says why; save_policy refuses it whatever the way in.
            probe = Policy(pk=self.instance.pk, name=self.instance.name, mode=cleaned["mode"])
            _, refusal = enforce_check(probe)
            if refusal and not cleaned.get(OVERRIDE_FIELD):
                self.add_error("mode", refusal)
        return cleaned


@admin.register(Policy)
class PolicyAdmin(GovernedAdmin):
    form = PolicyForm
    list_display = [
        "name",
        "category",
        "enabled",
        "mode",
        "autonomy_level",
        "min_confidence_score",
        "min_reliability_score",
        "requires_approval",
        "auto_approve_threshold",
    ]
    list_filter = ["enabled", "mode", "autonomy_level", "category"]
    search_fields = ["name", "description"]
    actions = ["simulate_last_30_days"]
    readonly_fields = ["shadow_agreement"]

    @admin.display(description="Shadow agreement")
    def shadow_agreement(self, obj: Policy | None) -> str:
        if obj is None or obj.pk is None:
            return "-"
        limits = thresholds()
        return (
            f"{shadow_agreement_of(obj).line()} of its shadow decisions, by people's later "
            f"feedback. Switching to enforce needs {limits.shadow_min_agreement:.0%} over "
            f"{limits.shadow_min_cases} cases (or an override with a reason)."
        )

    def save_model(self, request, obj, form, change) -> None:
        # Read by save_governed below (the admin instance is shared between requests).
        request.warden_override_shadow_agreement = bool(form.cleaned_data.get(OVERRIDE_FIELD))
        super().save_model(request, obj, form, change)

    def save_governed(self, request, obj, reason) -> None:
        save_policy(
            obj,
            user=request.user,
            reason=reason,
            override_shadow_agreement=getattr(request, "warden_override_shadow_agreement", False),
        )

    def formfield_for_choice_field(self, db_field, request, **kwargs):
        if db_field.name == "autonomy_level":
            # The form checks the choice before the model can: it must say why L4 is refused.
            kwargs["error_messages"] = {"invalid_choice": AUTONOMY_LEVEL_REFUSED}
        return super().formfield_for_choice_field(db_field, request, **kwargs)

    @admin.action(description="Simulate over the last 30 days (changes nothing)")
    def simulate_last_30_days(self, request, queryset) -> None:
        for policy in queryset:
            report = simulate_policy(policy, days=30, now=timezone.now())
            counts = ", ".join(
                f"{label}: {report.draft.get(label, 0)} (actually {report.actual.get(label, 0)})"
                for label in (AUTO_HEALED, TO_A_PERSON, BLOCKED)
            )
            held = ", ".join(report.held_by_blast_radius) or "none"
            self.message_user(
                request,
                f"{policy.name} (version {report.version}), {report.tickets} tickets: {counts}; "
                f"blast radius would hold: {held}",
            )


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Decision)
class DecisionAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "ticket",
        "outcome_label",
        "model_outcome_label",
        "probability",
        "runbook",
        "risk",
        "policy",
        "policy_version",
        "shadow",
    ]
    list_filter = [
        labelled_filter("outcome", "outcome", labels.outcome_label),
        labelled_filter("model_outcome", "model's class", labels.outcome_label),
        "shadow",
        labelled_filter("risk_level", "risk", labels.risk_label),
    ]
    search_fields = ["ticket__ticket_id"]
    list_select_related = ["ticket", "runbook", "policy"]
    fieldsets = [
        (None, {"fields": ["ticket", "created_at", "outcome_label", "model_statement"]}),
        ("Why", {"fields": ["reasons_list", "checks", "reliability_breakdown", "model_drivers"]}),
        (
            "What it would run",
            {
                "fields": [
                    "runbook",
                    "runbook_version",
                    "action",
                    "exact_command",
                    "risk",
                    "allowed",
                    "requires_approval",
                    "required_approvals",
                    "shadow",
                ]
            },
        ),
        ("Under", {"fields": ["policy", "policy_version", "model_version", "sample"]}),
    ]
    readonly_fields = [
        "outcome_label",
        "model_statement",
        "reasons_list",
        "checks",
        "reliability_breakdown",
        "model_drivers",
        "risk",
        "exact_command",
    ]

    @admin.display(description="Exact command")
    def exact_command(self, obj: Decision) -> str:
        """The argv an approval binds to and the agent must report, with its digest."""
        if not obj.argv:
            return "-"
        rollback = shlex.join(obj.rollback_argv) if obj.rollback_argv else "none"
        return format_html(
            "<code>{}</code><br>rollback: <code>{}</code><br><small>SHA-256 {}</small>",
            shlex.join(obj.argv),
            rollback,
            obj.argv_digest,
        )

    @admin.display(description="Outcome", ordering="outcome")
    def outcome_label(self, obj: Decision) -> str:
        return labelled(labels.outcome_label(obj.outcome), obj.outcome)

    @admin.display(description="Model's class", ordering="model_outcome")
    def model_outcome_label(self, obj: Decision) -> str:
        return labelled(labels.outcome_label(obj.model_outcome), obj.model_outcome)

    @admin.display(description="Probability of its class", ordering="confidence")
    def probability(self, obj: Decision) -> str:
        return f"{obj.confidence:.2f}"

    @admin.display(description="Risk", ordering="risk_level")
    def risk(self, obj: Decision) -> str:
        return labels.risk_label(obj.risk_level)

    @admin.display(description="The model")
    def model_statement(self, obj: Decision) -> str:
        return obj.model_statement()

    @admin.display(description="Reasons")
    def reasons_list(self, obj: Decision) -> str:
        items = format_html_join("\n", "<li>{}</li>", ((line,) for line in obj.reasons))
        return format_html('<ol class="reasons">{}</ol>', items)

    @admin.display(description="Safety checks")
    def checks(self, obj: Decision) -> str:
        rows = labels.check_list(obj.safety_checks)
        if not rows:
            return "Not reached (the decision was settled before the safety checks)."
        return format_html_join(
            "\n", "<div>{} {}</div>", ((("✓" if ok else "✗ failed:"), name) for name, ok in rows)
        )

    @admin.display(description="Reliability")
    def reliability_breakdown(self, obj: Decision) -> str:
        r = obj.reliability
        if not r:
            return "-"
        return (
            f"{r['overall_score']:.1f} ({r['confidence_level'].replace('_', ' ')}): "
            f"model {r['ai_confidence']:.1f}, human feedback {r['human_feedback']:.1f}, "
            f"success history {r['success_history']:.1f}, pattern match {r['pattern_match']:.1f}"
        )

    @admin.display(description="What drove the model")
    def model_drivers(self, obj: Decision) -> str:
        # explanation: [[feature, drop in the class's probability at its healthy value], ...]
        return ", ".join(f"{name} {weight:+.2f}" for name, weight in obj.explanation[:3]) or "-"


def _resume(pause: Pause, user, note: str) -> str:
    resume_automation(pause, user=user, now=timezone.now(), note=note)
    return f"Resumed: {pause.describe()}"


class PauseStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin) -> list[tuple[str, str]]:
        return [("active", "Holding automation"), ("ended", "Resumed or lapsed")]

    def queryset(self, request, queryset):
        active = active_pauses(timezone.now()).values("pk")
        if self.value() == "active":
            return queryset.filter(pk__in=active)
        if self.value() == "ended":
            return queryset.exclude(pk__in=active)
        return queryset


@admin.register(Pause)
class PauseAdmin(ReadOnlyHistoryAdmin):
    list_display = [
        "__str__",
        "holding",
        "scope",
        "category",
        "host",
        "created_at",
        "ends_at",
        "resumed_at",
        "resumed_by",
    ]
    list_filter = [PauseStateFilter, "scope", "category"]
    list_select_related = ["host", "created_by", "resumed_by"]
    fields = ["scope", "category", "host", "reason", "ends_at"]
    actions = [
        confirmed_action(
            description="Resume automation",
            verb="resume",
            perform=_resume,
            permissions=("change",),
        )
    ]

    @admin.display(boolean=True, description="Holding automation")
    def holding(self, obj: Pause) -> bool:
        return is_active(obj, timezone.now())

    def has_change_permission(self, request, obj=None) -> bool:
        # A pause is never edited, only resumed: the change permission gates the action.
        return obj is None and super().has_change_permission(request, obj)

    def save_model(self, request, obj, form, change) -> None:
        # Through the use case, so the pause is audited like every other switch.
        pause = pause_automation(
            scope=obj.scope,
            reason=obj.reason,
            user=request.user,
            now=timezone.now(),
            category=obj.category,
            host=obj.host,
            ends_at=obj.ends_at,
        )
        obj.pk = pause.pk


class ApprovalInline(admin.TabularInline):
    model = Approval
    extra = 0
    can_delete = False
    fields = ["approver", "verdict", "comment", "created_at"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


def _approve(request_obj: ApprovalRequest, user, note: str) -> str:
    result = approve_request(request_obj, user=user, comment=note, now=timezone.now())
    if result.status == ApprovalStatus.APPROVED:
        return f"Approved {result}: execution queued."
    return f"Approval recorded for {result}; {result.required_approvals} needed in all."


def _reject(request_obj: ApprovalRequest, user, note: str) -> str:
    reject_request(request_obj, user=user, comment=note, now=timezone.now())
    return f"Rejected {request_obj}: nothing will run."


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(ReadOnlyHistoryAdmin):
    list_display = [
        "ticket",
        "host",
        "runbook",
        "status",
        "approvals_so_far",
        "why_a_person",
        "time_left",
        "created_at",
    ]
    list_filter = ["status", "runbook__category"]
    search_fields = ["ticket__ticket_id", "ticket__host__name"]
    list_select_related = ["ticket__host", "runbook", "decision"]
    ordering = ["status", "created_at"]  # pending first, oldest first: what waits longest

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(approve_count=Count("approvals", filter=Q(approvals__verdict="approve")))
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra = {
            "may_decide": self.has_decide_permission(request),
            "decide_actions": [("approve", "Approve"), ("reject", "Reject")],
        }
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), **extra})

    @admin.display(description="Host", ordering="ticket__host__name")
    def host(self, obj: ApprovalRequest) -> str:
        return obj.ticket.host.name

    @admin.display(description="Approvals")
    def approvals_so_far(self, obj: ApprovalRequest) -> str:
        return f"{obj.approve_count} of {obj.required_approvals}"

    @admin.display(description="Why a person is needed")
    def why_a_person(self, obj: ApprovalRequest) -> str:
        reasons = obj.decision.reasons if obj.decision else []
        return reasons[-1] if reasons else "-"

    @admin.display(description="Time left", ordering="expires_at")
    def time_left(self, obj: ApprovalRequest) -> str:
        if obj.status != ApprovalStatus.PENDING:
            return "-"
        left = obj.expires_at - timezone.now()
        if left.total_seconds() <= 0:
            return "expired"
        hours, rest = divmod(int(left.total_seconds()), 3600)
        return f"{hours} h {rest // 60:02d} min"

    readonly_fields = [
        "ticket",
        "decision",
        "runbook",
        "runbook_version",
        "status",
        "void_reason",
        "required_approvals",
        "requested_by",
        "created_at",
        "expires_at",
        "decided_at",
        "decision_reasons",
        "model_drivers",
    ]
    inlines = [ApprovalInline]
    actions = [
        confirmed_action(
            description="Approve selected remediations",
            verb="approve",
            perform=_approve,
            permissions=("decide",),
        ),
        confirmed_action(
            description="Reject selected remediations",
            verb="reject",
            perform=_reject,
            permissions=("decide",),
        ),
    ]

    def has_decide_permission(self, request) -> bool:
        # The actions only show to those who may decide; approve_request checks again.
        return request.user.has_perm("governance.approve_approvalrequest")

    @admin.display(description="Why a person is needed")
    def decision_reasons(self, obj: ApprovalRequest) -> str:
        lines = obj.decision.reasons if obj.decision else []
        return format_html_join("\n", "<li>{}</li>", ((line,) for line in lines))

    @admin.display(description="What drove the model")
    def model_drivers(self, obj: ApprovalRequest) -> str:
        pairs = obj.decision.explanation[:3] if obj.decision else []
        return ", ".join(f"{name} {weight:+.2f}" for name, weight in pairs) or "-"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        # Only approve and reject change a request (the actions, the API, the console).
        return False


def _accept(proposal: AutonomyProposal, user, note: str) -> str:
    accepted = accept_proposal(proposal, user=user, now=timezone.now(), note=note)
    return f"Accepted: {accepted.target_name()} moved {accepted.step_label()}."


def _dismiss(proposal: AutonomyProposal, user, note: str) -> str:
    dismiss_proposal(proposal, user=user, now=timezone.now(), note=note)
    return f"Dismissed: {proposal}."


@admin.register(AutonomyProposal)
class AutonomyProposalAdmin(ReadOnlyAdmin):
    """Proposals one step up (governance.promotions.actions): read-only, decided by the actions."""

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
        # The actions only show to those who may decide; the use cases check again.
        return request.user.has_perm(permissions.DECIDE_PROPOSAL)

    @admin.display(description="Policy or pattern")
    def target(self, obj: AutonomyProposal) -> str:
        return obj.target_name()

    @admin.display(description="Step", ordering="from_level")
    def step(self, obj: AutonomyProposal) -> str:
        return obj.step_label()


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["sequence", "created_at", "event", "ticket_id", "short_summary", "actor"]
    list_filter = [
        labelled_filter("action", "event", labels.event_label),
        "object_type",
        ("created_at", admin.DateFieldListFilter),
    ]
    search_fields = ["ticket_id", "summary", "actor"]
    date_hierarchy = "created_at"
    fields = [
        "sequence",
        "created_at",
        "actor",
        "event",
        "action",
        "ticket_id",
        "object_type",
        "object_id",
        "summary",
        "data",
        "prev_hash",
        "hash",
    ]
    readonly_fields = ["event"]
    ordering = ["-sequence"]  # newest first: what happened last is what people look for
    actions = ["verify_whole_chain"]
    change_list_template = "admin/governance/auditevent/change_list.html"

    @admin.display(description="Event", ordering="action")
    def event(self, obj: AuditEvent) -> str:
        return labelled(labels.event_label(obj.action), obj.action)

    @admin.display(description="Summary")
    def short_summary(self, obj: AuditEvent) -> str:
        return obj.summary if len(obj.summary) <= 140 else obj.summary[:139] + "\u2026"

    @admin.action(description="Verify the whole audit chain")
    def verify_whole_chain(self, request, queryset) -> None:
        report = verify_audit_log()  # the same check as `manage.py verify_audit`
        self.message_user(
            request, report.line, messages.SUCCESS if report.intact else messages.ERROR
        )

    def get_urls(self):
        export = path(
            "export/",
            self.admin_site.admin_view(self.export_view),
            name="governance_auditevent_export",
        )
        return [export, *super().get_urls()]

    def changelist_view(self, request, extra_context=None):
        extra = {
            "may_export": request.user.has_perm(permissions.EXPORT_AUDIT),
            "export_formats": list(FORMATS),
            "export_query": request.GET.urlencode(),
        }
        return super().changelist_view(request, {**(extra_context or {}), **extra})

    def export_view(self, request):
        """The changelist's filtered rows (filters, date, search), streamed in a format."""
        if not request.user.has_perm(permissions.EXPORT_AUDIT):
            raise PermissionDenied
        query = request.GET.copy()
        fmt = query.pop("export_format", ["csv"])[-1]
        if fmt not in FORMATS:
            return HttpResponseBadRequest(f"export_format: choose one of {', '.join(FORMATS)}")
        request.GET = query
        changelist = self.get_changelist_instance(request)
        events = changelist.get_queryset(request)
        response = StreamingHttpResponse(stream(events, fmt), content_type=FORMATS[fmt])
        response["Content-Disposition"] = f'attachment; filename="warden-audit.{fmt}"'
        return response


# People and roles: access changes are governed changes too (governance.people.access).
class AuditedUserChangeForm(UserChangeForm):
    change_reason = ReasonForm.base_fields["change_reason"]


class AuditedUserCreationForm(AdminUserCreationForm):
    change_reason = ReasonForm.base_fields["change_reason"]


class AuditedGroupForm(forms.ModelForm):
    change_reason = ReasonForm.base_fields["change_reason"]


REASON_FIELDSET = ("Why", {"fields": ("change_reason",)})

admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class AuditedUserAdmin(NeverDeleted, UserAdmin):
    form = AuditedUserChangeForm
    add_form = AuditedUserCreationForm
    fieldsets = (*UserAdmin.fieldsets, REASON_FIELDSET)
    add_fieldsets = (*UserAdmin.add_fieldsets, REASON_FIELDSET)

    def save_model(self, request, obj, form, change) -> None:
        stored = User.objects.filter(pk=obj.pk).first() if change else None
        obj._access_before = access_of(stored)
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change) -> None:
        super().save_related(request, form, formsets, change)
        person = form.instance
        record_access_change(
            person,
            person._access_before,
            by=request.user,
            reason=form.cleaned_data.get("change_reason"),
        )


@admin.register(Group)
class AuditedGroupAdmin(NeverDeleted, GroupAdmin):
    form = AuditedGroupForm

    def save_model(self, request, obj, form, change) -> None:
        obj._permissions_before = permissions_of(obj) if change else None
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change) -> None:
        super().save_related(request, form, formsets, change)
        group = form.instance
        record_group_change(
            group,
            group._permissions_before,
            by=request.user,
            reason=form.cleaned_data.get("change_reason"),
        )


admin.site.site_header = "Warden"
admin.site.site_title = "Warden"
admin.site.index_title = "Operations"


# API tokens (governance/people/tokens.py): issued with `manage.py create_api_token`, revoked here
# or with `manage.py revoke_api_tokens`, each audited. knox's own admin deletes silently.
admin.site.unregister(AuthToken)


def _revoke_token(token: AuthToken, user: Any, note: str) -> str:
    revoke_api_token(token, by=user, reason=note)
    return f"API token {token.token_key}… of {token.user.get_username()} revoked"


@admin.register(AuthToken)
class AuthTokenAdmin(NeverDeleted, admin.ModelAdmin):
    list_display = ["token_key", "user", "created", "expiry"]
    list_select_related = ["user"]
    search_fields = ["user__username", "token_key"]
    fields = ["token_key", "user", "created", "expiry"]
    readonly_fields = fields
    actions = [
        confirmed_action(
            description="Revoke selected API tokens",
            verb="revoke",
            perform=_revoke_token,
            permissions=("revoke",),
        )
    ]

    def has_add_permission(self, request) -> bool:
        return False  # a token is shown once, by the command that issues it

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_revoke_permission(self, request) -> bool:
        return request.user.has_perm(permissions.REVOKE_TOKEN)
