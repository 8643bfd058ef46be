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
from scoring.models import MetricSample, ModelVersion
from scoring.monitoring import DRIFT_MIN_SAMPLES, DRIFT_WINDOW, DriftReport, model_drift


def _approve(version: ModelVersion, user, note: str) -> str:
    approve_model_version(version, actor=user, reason=note, now=timezone.now())
    return f"Model v{version.version} approved; every process serves it within seconds."


def _retire(version: ModelVersion, user, note: str) -> str:
    retire_model_version(version, actor=user, reason=note, now=timezone.now())
    return f"Model v{version.version} retired."


def _drift_summary(report: DriftReport) -> str:
    hours = int(DRIFT_WINDOW.total_seconds() // 3600)
    if not report.psi:
        return f"{report.label}: {report.samples} in the last {hours} h, {DRIFT_MIN_SAMPLES} needed"
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
