import base64

from django.contrib import admin
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from config.admin_actions import NeverDeleted, confirmed_action
from governance.admin.base import ReadOnlyHistoryAdmin, labelled
from governance.audit import permissions
from governance.rules import labels
from scoring.actions import approve_model_version, retire_model_version
from scoring.choices import ModelStatus, Severity
from scoring.models import MetricSample, ModelVersion, TriageModelVersion
from scoring.monitoring import (
    DRIFT_LOOKBACK,
    DRIFT_MIN_SAMPLES,
    DRIFT_WINDOW,
    LEVEL_LABEL,
    DriftReport,
    model_drift,
)
from scoring.tasks import queue_triage_comparison, queue_triage_retraining
from scoring.triage.actions import approve_triage_model_version, retire_triage_model_version
from scoring.triage.drift import TEXT_DRIFT_MIN_TICKETS, TEXT_DRIFT_WINDOW, text_drift


def _approve(version: ModelVersion, user, note: str) -> str:
    approve_model_version(version, actor=user, reason=note, now=timezone.now())
    return f"Model v{version.version} approved; every process serves it within seconds."


def _retire(version: ModelVersion, user, note: str) -> str:
    retire_model_version(version, actor=user, reason=note, now=timezone.now())
    return f"Model v{version.version} retired."


def _drift_summary(report: DriftReport) -> str:
    hours = int(DRIFT_WINDOW.total_seconds() // 3600)
    if not report.psi:
        return (
            f"{report.label}: judged on the last {hours} h, or the newest "
            f"{DRIFT_MIN_SAMPLES} samples of {DRIFT_LOOKBACK.days} days"
        )
    feature, psi = report.worst
    return (
        f"{report.label} (worst: {feature} PSI {psi:.3f}, sampling noise "
        f"{report.noise.get(feature, 0.0):.3f}; {report.samples} samples, {report.hosts} hosts)"
    )


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyHistoryAdmin):
    list_display = [
        "version",
        "status",
        "algorithm",
        "macro_f1",
        "hitl_recall",
        "serving_drift",
        "created_at",
        "approved_at",
    ]
    list_filter = ["status"]
    readonly_fields = [
        "version",
        "status",
        "algorithm",
        "artifact",
        "sha256",
        "thresholds",
        "class_weights",
        "metrics",
        "params",
        "confusion_matrix",
        "drift",
        "approved_at",
        "approved_by",
        "retired_at",
        "created_at",
    ]
    exclude = ["confusion_matrix_svg", "feature_distribution", "feature_names"]
    # Changing what serves is a supervisor's call: approvers and compliance only look.
    actions = [
        confirmed_action(
            description="Approve to serve",
            verb="approve",
            perform=_approve,
            permissions=("serve",),
        ),
        confirmed_action(
            description="Retire", verb="retire", perform=_retire, permissions=("serve",)
        ),
    ]

    def has_serve_permission(self, request) -> bool:
        return request.user.has_perm(permissions.SERVE_MODEL)

    def has_change_permission(self, request, obj=None) -> bool:
        # Every field is the training run's record; only approve and retire change a version.
        return False

    @admin.display(description="macro-F1")
    def macro_f1(self, obj: ModelVersion) -> str:
        return f"{obj.metrics.get('macro_f1', 0):.4f}"

    @admin.display(description="HITL recall")
    def hitl_recall(self, obj: ModelVersion) -> str:
        per_class = obj.metrics.get("per_class", {})
        return f"{per_class.get('HITL_REQUIRED', {}).get('recall', 0):.4f}"

    @admin.display(description="Confusion matrix (held-out set)")
    def confusion_matrix(self, obj: ModelVersion) -> str:
        # As an image, not inline markup: whatever the stored SVG holds, it cannot run script.
        if not obj.confusion_matrix_svg:
            return "-"
        encoded = base64.b64encode(obj.confusion_matrix_svg.encode()).decode()
        return format_html(
            '<img alt="Confusion matrix" src="data:image/svg+xml;base64,{}">', encoded
        )

    @admin.display(description="Drift (last day)")
    def serving_drift(self, obj: ModelVersion) -> str:
        # Only the serving version in the list: each report reads the last day's samples.
        if obj.status != ModelStatus.APPROVED:
            return "-"
        return _drift_summary(model_drift(obj, timezone.now()))

    @admin.display(description="Drift of the last day's samples from the training data")
    def drift(self, obj: ModelVersion) -> str:
        report = model_drift(obj, timezone.now())
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (feature, f"{psi:.4f}", f"{report.noise.get(feature, 0.0):.4f}")
                for feature, psi in report.psi.items()
            ),
        )
        # The level compares PSI beyond sampling noise with the thresholds (scoring.drift).
        table = (
            format_html(
                "<table><tr><th>feature</th><th>PSI</th><th>sampling noise</th></tr>{}</table>",
                rows,
            )
            if report.psi
            else ""
        )
        return format_html("<p><strong>{}</strong></p>{}", _drift_summary(report), table)

    def has_add_permission(self, request) -> bool:
        return False


class SeverityFilter(admin.SimpleListFilter):
    """The model's classes by their labels; a fixed list, so no scan of every sample."""

    title = "model's class"
    parameter_name = "severity__exact"  # Django's own, so older links keep working

    def lookups(self, request, model_admin) -> list[tuple[str, str]]:
        return [(str(value), labels.severity_label(value)) for value in Severity.values]

    def queryset(self, request, queryset):
        return queryset.filter(severity=self.value()) if self.value() else queryset


@admin.register(MetricSample)
class MetricSampleAdmin(NeverDeleted, admin.ModelAdmin):
    list_display = [
        "host",
        "taken_at",
        "severity_label",
        "confidence",
        "category",
        "disk_usage",
        "memory_usage",
        "cpu_usage",
        "dns_latency_ms",
        "firewall_change_requested",
        "ticket",
    ]
    list_filter = [SeverityFilter, "category"]
    search_fields = ["host__name", "ticket__ticket_id"]
    list_select_related = ["host", "ticket"]
    date_hierarchy = "taken_at"

    @admin.display(description="Model's class", ordering="severity")
    def severity_label(self, obj: MetricSample) -> str:
        return labelled(labels.severity_label(obj.severity), obj.get_severity_display())

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


def _approve_triage(version: TriageModelVersion, user, note: str) -> str:
    approve_triage_model_version(version, actor=user, reason=note, now=timezone.now())
    return f"Triage model v{version.version} approved; every process serves it within seconds."


def _retire_triage(version: TriageModelVersion, user, note: str) -> str:
    retire_triage_model_version(version, actor=user, reason=note, now=timezone.now())
    return f"Triage model v{version.version} retired."


def _compare_triage(version: TriageModelVersion, user, note: str) -> str:
    queue_triage_comparison(version, actor=f"user:{user.get_username()}")
    return (
        f"Triage model v{version.version}: re-scoring recent tickets with it and the serving "
        "version; its page shows the progress and then the comparison."
    )


def _retrain_triage(version: TriageModelVersion, user, note: str) -> str:
    queue_triage_retraining(actor=f"user:{user.get_username()}")
    return "Training a new triage candidate; it appears in this list when registered."


def _table(header: tuple[str, ...], rows) -> str:
    head = format_html_join("", "<th>{}</th>", ((h,) for h in header))
    body = format_html_join(
        "",
        "<tr>{}</tr>",
        ((format_html_join("", "<td>{}</td>", ((cell,) for cell in row)),) for row in rows),
    )
    return format_html("<table><tr>{}</tr>{}</table>", head, body)


HEADLINE_METRICS = (
    ("category_accuracy", "Category accuracy"),
    ("runbook_accuracy", "Runbook accuracy (top label)"),
    ("macro_f1", "Macro-F1 over labels"),
    ("ece", "Expected calibration error"),
    ("brier", "Brier score"),
    ("unsafe_without_abstention", "Unsafe suggestions without abstaining"),
    ("unsafe_suggestions", "Unsafe suggestions (after abstaining)"),
    ("abstention_rate", "Abstains (a person picks)"),
    ("accuracy_when_answered", "Accuracy when it answers"),
    ("n_eval", "Held-out tickets"),
    ("n_train", "Training texts"),
    ("n_history", "of which people's tickets"),
)


@admin.register(TriageModelVersion)
class TriageModelVersionAdmin(ReadOnlyHistoryAdmin):
    list_display = [
        "version",
        "status",
        "runbook_accuracy",
        "unsafe",
        "abstains",
        "compared",
        "task_progress",
        "created_at",
        "approved_at",
    ]
    list_filter = ["status"]
    readonly_fields = [
        "version",
        "status",
        "algorithm",
        "artifact",
        "sha256",
        "task_progress",
        "comparison_table",
        "held_out_figures",
        "per_label_table",
        "abstention_rule",
        "threshold_scan",
        "drift",
        "params",
        "approved_at",
        "approved_by",
        "retired_at",
        "created_at",
    ]
    exclude = ["metrics", "thresholds", "comparison", "progress", "text_reference"]
    actions = [
        confirmed_action(
            description="Compare with the serving version",
            verb="compare",
            perform=_compare_triage,
            permissions=("serve",),
        ),
        confirmed_action(
            description="Approve to serve",
            verb="approve",
            perform=_approve_triage,
            permissions=("serve",),
        ),
        confirmed_action(
            description="Retire", verb="retire", perform=_retire_triage, permissions=("serve",)
        ),
        confirmed_action(
            description="Train a new candidate",
            verb="train a new candidate",
            perform=_retrain_triage,
            permissions=("serve",),
        ),
    ]

    def has_serve_permission(self, request) -> bool:
        return request.user.has_perm(permissions.SERVE_MODEL)

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description="runbook accuracy")
    def runbook_accuracy(self, obj: TriageModelVersion) -> str:
        return f"{obj.metrics.get('runbook_accuracy', 0):.4f}"

    @admin.display(description="unsafe (held out)")
    def unsafe(self, obj: TriageModelVersion) -> int:
        return obj.metrics.get("unsafe_suggestions", 0)

    @admin.display(description="abstains")
    def abstains(self, obj: TriageModelVersion) -> str:
        return f"{obj.metrics.get('abstention_rate', 0):.1%}"

    @admin.display(description="compared with")
    def compared(self, obj: TriageModelVersion) -> str:
        comparison = obj.comparison or {}
        if not comparison.get("finished_at"):
            return "-"
        if comparison.get("serving_version") is None:
            return f"nothing serving ({comparison.get('tickets', 0)} tickets)"
        return (
            f"v{comparison['serving_version']}: agreement {comparison.get('agreement', 0):.1%} "
            f"on {comparison.get('tickets', 0)} tickets"
        )

    @admin.display(description="Task progress")
    def task_progress(self, obj: TriageModelVersion) -> str:
        progress = obj.progress or {}
        if not progress:
            return "-"
        if "total" in progress:
            return f"{progress['stage']}: {progress.get('done', 0)}/{progress['total']}"
        return progress["stage"]

    @admin.display(description="Comparison with the serving version on recent tickets")
    def comparison_table(self, obj: TriageModelVersion) -> str:
        comparison = obj.comparison or {}
        if not comparison.get("finished_at"):
            return "Not compared yet: use the action 'Compare with the serving version'."
        names = [name for name in ("candidate", "serving") if name in comparison]
        rows = [
            (label, *[comparison[name].get(key, "-") for name in names])
            for key, label in (
                ("accuracy_on_known", "Accuracy on resolved tickets"),
                ("unsafe_suggestions", "Unsafe suggestions"),
                ("abstention_rate", "Abstains"),
                ("known", "Resolved tickets (fix known)"),
            )
        ]
        against = comparison.get("serving_version")
        summary = format_html(
            "<p>{} tickets of the last {} days, finished {}; {}</p>",
            comparison.get("tickets", 0),
            comparison.get("days", "?"),
            comparison["finished_at"],
            f"agreement with v{against}: {comparison.get('agreement', 0):.1%}"
            if against is not None
            else "no version was serving",
        )
        headers = ("", f"v{obj.version} (this)", *([f"v{against} (serving)"] if against else []))
        disagreements = comparison.get("disagreements") or []
        detail = (
            _table(
                ("ticket id", "this version suggests", "serving suggests"),
                [
                    (d["ticket"], d["candidate"] or "(a person)", d["serving"] or "(a person)")
                    for d in disagreements
                ],
            )
            if disagreements
            else ""
        )
        return format_html("{}{}{}", summary, _table(headers, rows), detail)

    @admin.display(description="Held-out figures")
    def held_out_figures(self, obj: TriageModelVersion) -> str:
        return _table(
            ("figure", "value"),
            [(label, obj.metrics.get(key, "-")) for key, label in HEADLINE_METRICS],
        )

    @admin.display(description="Per label (held out)")
    def per_label_table(self, obj: TriageModelVersion) -> str:
        per_label = obj.metrics.get("per_label", {})
        return _table(
            ("label (category:runbook)", "support", "accuracy", "abstains"),
            [
                (label, v["support"], v["accuracy"], v["abstained"])
                for label, v in per_label.items()
            ],
        )

    @admin.display(description="Abstention rule")
    def abstention_rule(self, obj: TriageModelVersion) -> str:
        rule = obj.thresholds or {}
        return _table(
            ("setting", "value"),
            [
                ("suggest only from this probability", rule.get("threshold", "-")),
                ("riskier labels may hold less than", rule.get("rival_share", "-")),
                ("name the category from", rule.get("category_threshold", "-")),
            ],
        )

    @admin.display(description="Threshold chosen on out-of-fold predictions")
    def threshold_scan(self, obj: TriageModelVersion) -> str:
        scan = obj.metrics.get("threshold_scan") or []
        if not scan:
            return "-"
        return _table(
            ("threshold", "unsafe", "abstains"),
            [(e["threshold"], e["unsafe"], e["abstention_rate"]) for e in scan],
        )

    @admin.display(description="Drift of recent tickets' words")
    def drift(self, obj: TriageModelVersion) -> str:
        report = text_drift(obj, timezone.now())
        days = TEXT_DRIFT_WINDOW.days
        if report.tickets < TEXT_DRIFT_MIN_TICKETS:
            return (
                f"{report.tickets} tickets in the last {days} days, {TEXT_DRIFT_MIN_TICKETS} needed"
            )
        return format_html(
            "<p><strong>{}</strong> ({} tickets, last {} days)</p>{}",
            LEVEL_LABEL[report.level],
            report.tickets,
            days,
            _table(
                ("figure", "recent", "at training"),
                [
                    (
                        "words unknown to the model",
                        report.unknown_token_share,
                        report.reference_unknown_token_share,
                    ),
                    (
                        "mean best similarity to the corpus",
                        report.mean_best_similarity,
                        report.reference_mean_best_similarity,
                    ),
                ],
            ),
        )
