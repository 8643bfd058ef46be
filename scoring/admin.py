import json
from collections.abc import Iterable

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connection
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join

from config.admin_actions import NeverDeleted, confirmed_action
from governance.admin.base import ReadOnlyHistoryAdmin, labelled
from governance.audit import permissions
from governance.rules import labels
from remediation.choices import Category
from remediation.models import Host
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


def approval_line(version: ModelVersion) -> str:
    """Who approved the version and when, or that nobody has yet. A version approved by a
    command (`train_severity_model --approve`) has no user: the audit trail's actor says
    who ran it."""
    if version.approved_at is None:
        return "not approved yet"
    when = date_format(timezone.localtime(version.approved_at), "DATETIME_FORMAT")
    if version.approved_by is not None:
        return f"by {version.approved_by} at {when}"
    from governance.models import AuditEvent

    approved = (
        AuditEvent.objects.filter(
            action="model.approved", object_type="ModelVersion", object_id=str(version.pk)
        )
        .order_by("-sequence")
        .first()
    )
    return f"by {approved.actor if approved else 'a command'} at {when}"


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


CLASS_ORDER = (Severity.NO_ACTION, Severity.AUTO_HEAL, Severity.HITL_REQUIRED)
METRIC_ROWS = (  # the summary metrics a training run records, as people read them
    ("macro_f1", "Macro-F1 (all classes alike)", "percent"),
    ("mean_cost", "Mean cost of its mistakes per sample", "number"),
    ("n_eval", "Held-out samples it was scored on", "count"),
    ("n_train", "Training samples", "count"),
    ("fit_seconds", "Seconds to train", "number"),
)


def _class_heading(severity: Severity) -> str:
    return labels.with_code(labels.severity_label(severity.value), severity.name)


def _shown(value: object, kind: str = "") -> str:
    if kind == "percent" and isinstance(value, int | float):
        return labels.percent(value)
    if kind == "count" and isinstance(value, int | float):
        return f"{value:,.0f}"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple | dict):
        return json.dumps(value)
    return str(value)


def key_value_table(rows: Iterable[tuple[str, str]]) -> str:
    """Name and value rows as a small table."""
    body = format_html_join("", "<tr><th scope='row'>{}</th><td>{}</td></tr>", rows)
    return format_html('<table class="facts">{}</table>', body)


def class_matrix_table(matrix: list[list[float]], corner: str, percent_rows: bool) -> str:
    """A 3 x 3 matrix by class: rows are the truth, columns what the model picked. With
    `percent_rows` each cell adds its share of the row (of the samples truly in that class)."""
    head = format_html_join(
        "", "<th scope='col'>{}</th>", ((_class_heading(s),) for s in CLASS_ORDER)
    )
    body = []
    for severity, row in zip(CLASS_ORDER, matrix, strict=False):
        total = sum(row) or 1
        cells = format_html_join(
            "",
            "<td>{}</td>",
            (
                (f"{value:,.0f} ({value / total:.1%})" if percent_rows else f"{value:g}",)
                for value in row
            ),
        )
        body.append(
            format_html("<tr><th scope='row'>{}</th>{}</tr>", _class_heading(severity), cells)
        )
    return format_html(
        '<table class="matrix"><tr><th scope="col">{}</th>{}</tr>{}</table>',
        corner,
        head,
        format_html_join("", "{}", ((row,) for row in body)),
    )


def metrics_tables(metrics: dict) -> str:
    """A training run's metrics: the summary, then precision, recall and F1 by class."""
    summary = key_value_table(
        (label, _shown(metrics[key], kind)) for key, label, kind in METRIC_ROWS if key in metrics
    )
    per_class = metrics.get("per_class", {})
    rows = format_html_join(
        "",
        "<tr><th scope='row'>{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (
                _class_heading(severity),
                _shown(per_class[severity.name].get("precision"), "percent"),
                _shown(per_class[severity.name].get("recall"), "percent"),
                _shown(per_class[severity.name].get("f1"), "percent"),
                _shown(per_class[severity.name].get("support"), "count"),
            )
            for severity in CLASS_ORDER
            if severity.name in per_class
        ),
    )
    by_class = format_html(
        '<table class="matrix"><tr><th scope="col">Class</th><th scope="col">Precision</th>'
        '<th scope="col">Recall</th><th scope="col">F1</th><th scope="col">Samples</th></tr>'
        "{}</table>",
        rows,
    )
    return format_html("{}{}", summary, by_class)


def thresholds_table(thresholds: dict) -> str:
    """The decision rule: the cost of each mistake (rows: truth, columns: picked), and the
    probability floor."""
    parts = []
    cost = thresholds.get("misclassification_cost")
    if cost:
        parts.append(
            format_html(
                "<p>Cost of each mistake (the model picks the class of least expected cost):</p>{}",
                class_matrix_table(cost, "truth \u2193 / picked \u2192", percent_rows=False),
            )
        )
    rest = [
        (key.replace("_", " ").capitalize(), _shown(v))
        for key, v in thresholds.items()
        if key != "misclassification_cost"
    ]
    if rest:
        parts.append(key_value_table(rest))
    return format_html_join("", "{}", ((part,) for part in parts)) if parts else "-"


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
        "thresholds_shown",
        "class_weights_shown",
        "metrics_shown",
        "params_shown",
        "confusion_matrix",
        "drift",
        "approval",
        "retired_at",
        "created_at",
    ]
    # The stored JSON is shown as tables by the *_shown fields above.
    exclude = [
        "confusion_matrix_svg",
        "feature_distribution",
        "feature_names",
        "thresholds",
        "class_weights",
        "metrics",
        "params",
        "approved_at",
        "approved_by",
    ]
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

    @admin.display(description="Macro-F1")
    def macro_f1(self, obj: ModelVersion) -> str:
        return labels.percent(obj.metrics.get("macro_f1", 0))

    @admin.display(description="Recall of needs a person")
    def hitl_recall(self, obj: ModelVersion) -> str:
        per_class = obj.metrics.get("per_class", {})
        return labels.percent(per_class.get("HITL_REQUIRED", {}).get("recall", 0))

    @admin.display(description="Decision rule")
    def thresholds_shown(self, obj: ModelVersion) -> str:
        return thresholds_table(obj.thresholds or {})

    @admin.display(description="Class weights")
    def class_weights_shown(self, obj: ModelVersion) -> str:
        weights = obj.class_weights or {}
        return key_value_table(
            (_class_heading(s), _shown(weights[str(s.value)]))
            for s in CLASS_ORDER
            if str(s.value) in weights
        )

    @admin.display(description="Metrics (held-out set)")
    def metrics_shown(self, obj: ModelVersion) -> str:
        return metrics_tables(obj.metrics or {})

    @admin.display(description="Training parameters")
    def params_shown(self, obj: ModelVersion) -> str:
        return key_value_table(
            (key.replace("_", " "), _shown(v)) for key, v in (obj.params or {}).items()
        )

    @admin.display(description="Confusion matrix (held-out set)")
    def confusion_matrix(self, obj: ModelVersion) -> str:
        matrix = (obj.metrics or {}).get("confusion_matrix")
        if not matrix:
            return "-"
        return format_html(
            "{}<p class='help'>Rows: the true class; columns: the class the model picked; "
            "each cell's share is of its row.</p>",
            class_matrix_table(matrix, "truth \u2193 / picked \u2192", percent_rows=True),
        )

    @admin.display(description="Approved")
    def approval(self, obj: ModelVersion) -> str:
        return approval_line(obj)

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


# The sample list reads one page of a table that may hold a month of every host's readings
# (hundreds of millions of rows), so nothing on it scans the table: no date hierarchy (its
# DISTINCT dates and MIN/MAX), filters whose choices are known without a query, an exact
# host filter, and counts bounded by COUNT_CAP.
COUNT_CAP = 10_000


class CappedCountPaginator(Paginator):
    """Counts up to COUNT_CAP rows exactly; past that, PostgreSQL's planner estimate (an
    EXPLAIN, no scan): page numbers stay about right where an exact count would read every
    matching row."""

    @cached_property
    def count(self) -> int:
        rows = self.object_list.order_by()[: COUNT_CAP + 1].count()
        if rows <= COUNT_CAP or connection.vendor != "postgresql":
            return rows
        plan = json.loads(self.object_list.order_by().explain(format="json"))
        return max(int(plan[0]["Plan"]["Plan Rows"]), rows)


class CategoryFilter(admin.SimpleListFilter):
    """The categories a sample may show, known without reading the table."""

    title = "category"
    parameter_name = "category"

    def lookups(self, request, model_admin) -> list[tuple[str, str]]:
        return list(Category.choices)

    def queryset(self, request, queryset):
        return queryset.filter(category=self.value()) if self.value() else queryset


class HostFilter(admin.SimpleListFilter):
    """One host's samples (the link on a host's page); lists only the chosen host, never
    every host."""

    title = "host"
    parameter_name = "host"

    def lookups(self, request, model_admin) -> list[tuple[str, str]]:
        value = self.value()
        if not value or not value.isdigit():
            return []
        return [
            (str(pk), name) for pk, name in Host.objects.filter(pk=value).values_list("pk", "name")
        ]

    def queryset(self, request, queryset):
        value = self.value()
        if value and value.isdigit():
            return queryset.filter(host_id=int(value))
        return queryset


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
    list_filter = [
        SeverityFilter,
        CategoryFilter,
        ("taken_at", admin.DateFieldListFilter),
        HostFilter,
    ]
    # Exact: a host's name or a ticket's id, each found by its index.
    search_fields = ["=host__name", "=ticket__ticket_id"]
    search_help_text = "A host's name or a ticket's id, exactly."
    list_select_related = ["host", "ticket"]
    paginator = CappedCountPaginator
    show_full_result_count = False

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
