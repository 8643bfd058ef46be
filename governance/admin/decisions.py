"""Decisions: read-only, each with its reasons, checks and the exact command it would run."""

import shlex

from django.contrib import admin
from django.utils.html import format_html, format_html_join

from governance.admin.base import ReadOnlyAdmin, labelled, labelled_filter
from governance.models import Decision
from governance.rules import labels


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
        return labels.percent(obj.confidence)

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
        severity = labels.SEVERITY_BY_OUTCOME.get(obj.model_outcome)
        return labels.driver_list(obj.explanation, severity) or "-"
