"""Policies: edited with a reason through save_policy, each edit a version; a dry run of
a policy over the last 30 days changes nothing."""

from django import forms
from django.contrib import admin
from django.utils import timezone

from governance.admin.base import GovernedAdmin, ReasonForm, given_reason
from governance.choices import PolicyMode
from governance.decisions.simulation import AUTO_HEALED, BLOCKED, TO_A_PERSON, simulate_policy
from governance.models import AUTONOMY_LEVEL_REFUSED, WEEKDAYS, Policy
from governance.policies.actions import OVERRIDE_FIELD, save_policy
from governance.policies.shadow import enforce_check, shadow_agreement_of, thresholds
from remediation.choices import ActionType


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
        # Probabilities and shares are stored from 0 to 1, scores from 0 to 100: each field
        # says its scale, so 0.8 beside 75.0 reads as 80% beside 75 of 100.
        help_texts = {
            "min_confidence_score": "A probability from 0 to 1: 0.8 is 80%.",
            "min_reliability_score": "A score from 0 to 100.",
            "min_positive_feedback_rate": "A share from 0 to 1: 0.9 is 90%.",
            "min_auto_confidence_escalation": (
                "A probability from 0 to 1: below it a person decides (0.6 is 60%)."
            ),
            "auto_approve_threshold": "A reliability score from 0 to 100.",
        }

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
            f"People's later feedback on its shadow decisions: {shadow_agreement_of(obj).line()}. "
            f"Switching to enforce needs {limits.shadow_min_agreement:.0%} agreement over "
            f"{limits.shadow_min_cases} cases (or an override with a reason)."
        )

    def get_readonly_fields(self, request, obj=None):
        # The agreement is a shadow policy's track record: an enforcing policy has none.
        fields = list(super().get_readonly_fields(request, obj))
        if obj is None or obj.mode != PolicyMode.SHADOW:
            fields.remove("shadow_agreement")
        return fields

    def save_model(self, request, obj, form, change) -> None:
        save_policy(
            self.row_to_save(obj, form, change),
            actor=request.user,
            reason=given_reason(form),
            now=timezone.now(),
            override_shadow_agreement=bool(form.cleaned_data.get(OVERRIDE_FIELD)),
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
