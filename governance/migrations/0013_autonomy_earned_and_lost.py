"""Autonomy earned and lost (governance.promotions.actions): proposals one step up, a lowered
pattern's level, the notice that tells of a demotion, who may see and decide proposals,
and the schedule that proposes."""

import django.core.validators
import django.db.models.deletion
import django.db.models.expressions
import django.utils.timezone
import simple_history.models
from django.conf import settings
from django.contrib.auth.management import create_permissions
from django.db import migrations, models


def grant_and_schedule(apps, schema_editor):
    for app_config in apps.get_app_configs():  # permissions are normally made after migrate
        app_config.models_module = True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    ours = Permission.objects.filter(
        content_type__app_label="governance",
        content_type__model__in=["autonomyproposal", "patternautonomy"],
    )
    # Supervisors decide proposals; approvers and compliance see them (view only).
    for name, permissions in (
        ("supervisors", ours.exclude(codename__startswith="delete_")),
        ("approvers", ours.filter(codename__startswith="view_")),
        ("compliance", ours.filter(codename__startswith="view_")),
    ):
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(*permissions)
    apps.get_model("django_q", "Schedule").objects.update_or_create(
        name="warden-autonomy",
        defaults={
            "func": "governance.tasks.propose_autonomy_promotions",
            "schedule_type": "I",
            "minutes": 5,
            "repeats": -1,
        },
    )


def unschedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name="warden-autonomy").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("feedback", "0004_database_checks"),
        ("governance", "0012_notices"),
        ("remediation", "0007_execution_binds_to_what_was_decided"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [
        migrations.CreateModel(
            name="AutonomyProposal",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "change",
                    models.CharField(
                        choices=[
                            ("raise_level", "One autonomy level up"),
                            ("drop_approval", "Approval no longer needed"),
                        ],
                        max_length=20,
                    ),
                ),
                (
                    "from_level",
                    models.PositiveSmallIntegerField(
                        choices=[
                            (0, "L0 manual"),
                            (1, "L1 assisted (human approves)"),
                            (2, "L2 conditional (acts, human notified)"),
                            (3, "L3 bounded (acts within limits, human can override)"),
                        ]
                    ),
                ),
                (
                    "to_level",
                    models.PositiveSmallIntegerField(
                        choices=[
                            (0, "L0 manual"),
                            (1, "L1 assisted (human approves)"),
                            (2, "L2 conditional (acts, human notified)"),
                            (3, "L3 bounded (acts within limits, human can override)"),
                        ]
                    ),
                ),
                ("numbers", models.JSONField(blank=True, default=dict)),
                ("summary", models.CharField(max_length=500)),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("proposed", "Proposed"),
                            ("accepted", "Accepted"),
                            ("dismissed", "Dismissed"),
                            ("superseded", "Superseded"),
                        ],
                        default="proposed",
                        max_length=12,
                    ),
                ),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("decided_at", models.DateTimeField(blank=True, null=True)),
                ("note", models.CharField(blank=True, max_length=500)),
            ],
            options={
                "ordering": ["-created_at"],
            },
        ),
        migrations.CreateModel(
            name="HistoricalPatternAutonomy",
            fields=[
                (
                    "id",
                    models.BigIntegerField(
                        auto_created=True, blank=True, db_index=True, verbose_name="ID"
                    ),
                ),
                (
                    "autonomy_level",
                    models.PositiveSmallIntegerField(
                        choices=[
                            (0, "L0 manual"),
                            (1, "L1 assisted (human approves)"),
                            (2, "L2 conditional (acts, human notified)"),
                            (3, "L3 bounded (acts within limits, human can override)"),
                        ],
                        default=1,
                        validators=[django.core.validators.MinValueValidator(1)],
                    ),
                ),
                ("changed_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("reason", models.CharField(max_length=500)),
                ("history_id", models.AutoField(primary_key=True, serialize=False)),
                ("history_date", models.DateTimeField(db_index=True)),
                ("history_change_reason", models.CharField(max_length=100, null=True)),
                (
                    "history_type",
                    models.CharField(
                        choices=[("+", "Created"), ("~", "Changed"), ("-", "Deleted")], max_length=1
                    ),
                ),
            ],
            options={
                "verbose_name": "historical pattern autonomy",
                "verbose_name_plural": "historical pattern autonomy",
                "ordering": ("-history_date", "-history_id"),
                "get_latest_by": ("history_date", "history_id"),
            },
            bases=(simple_history.models.HistoricalChanges, models.Model),
        ),
        migrations.CreateModel(
            name="PatternAutonomy",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "autonomy_level",
                    models.PositiveSmallIntegerField(
                        choices=[
                            (0, "L0 manual"),
                            (1, "L1 assisted (human approves)"),
                            (2, "L2 conditional (acts, human notified)"),
                            (3, "L3 bounded (acts within limits, human can override)"),
                        ],
                        default=1,
                        validators=[django.core.validators.MinValueValidator(1)],
                    ),
                ),
                ("changed_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("reason", models.CharField(max_length=500)),
            ],
            options={
                "verbose_name_plural": "pattern autonomy",
            },
        ),
        migrations.RemoveConstraint(
            model_name="notice",
            name="governance_notice_kind_allowed",
        ),
        migrations.RemoveConstraint(
            model_name="noticedelivery",
            name="governance_noticedelivery_kind_allowed",
        ),
        migrations.AlterField(
            model_name="notice",
            name="kind",
            field=models.CharField(
                choices=[
                    ("approval_requested", "Approval needed"),
                    ("escalated", "Escalated to people"),
                    ("l2_action", "Acted at L2 (people notified)"),
                    ("action_failed", "Action failed"),
                    ("verification_failed", "Verification failed"),
                    ("rolled_back", "Rolled back"),
                    ("rollback_failed", "Rollback failed"),
                    ("autonomy_lowered", "Autonomy lowered to L1"),
                ],
                max_length=30,
            ),
        ),
        migrations.AlterField(
            model_name="noticedelivery",
            name="kind",
            field=models.CharField(
                choices=[
                    ("approval_requested", "Approval needed"),
                    ("escalated", "Escalated to people"),
                    ("l2_action", "Acted at L2 (people notified)"),
                    ("action_failed", "Action failed"),
                    ("verification_failed", "Verification failed"),
                    ("rolled_back", "Rolled back"),
                    ("rollback_failed", "Rollback failed"),
                    ("autonomy_lowered", "Autonomy lowered to L1"),
                ],
                max_length=30,
            ),
        ),
        migrations.AddConstraint(
            model_name="notice",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    (
                        "kind__in",
                        [
                            "action_failed",
                            "approval_requested",
                            "autonomy_lowered",
                            "escalated",
                            "l2_action",
                            "rollback_failed",
                            "rolled_back",
                            "verification_failed",
                        ],
                    ),
                    ("kind__isnull", True),
                    _connector="OR",
                ),
                name="governance_notice_kind_allowed",
            ),
        ),
        migrations.AddConstraint(
            model_name="noticedelivery",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    (
                        "kind__in",
                        [
                            "action_failed",
                            "approval_requested",
                            "autonomy_lowered",
                            "escalated",
                            "l2_action",
                            "rollback_failed",
                            "rolled_back",
                            "verification_failed",
                        ],
                    ),
                    ("kind__isnull", True),
                    _connector="OR",
                ),
                name="governance_noticedelivery_kind_allowed",
            ),
        ),
        migrations.AddField(
            model_name="autonomyproposal",
            name="decided_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(
            model_name="autonomyproposal",
            name="pattern",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="autonomy_proposals",
                to="feedback.pattern",
            ),
        ),
        migrations.AddField(
            model_name="autonomyproposal",
            name="policy",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="proposals",
                to="governance.policy",
            ),
        ),
        migrations.AddField(
            model_name="historicalpatternautonomy",
            name="history_user",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(
            model_name="historicalpatternautonomy",
            name="pattern",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="feedback.pattern",
            ),
        ),
        migrations.AddField(
            model_name="patternautonomy",
            name="pattern",
            field=models.OneToOneField(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="autonomy",
                to="feedback.pattern",
            ),
        ),
        migrations.AddIndex(
            model_name="autonomyproposal",
            index=models.Index(
                condition=models.Q(("status", "proposed")),
                fields=["created_at"],
                name="open_proposals",
            ),
        ),
        migrations.AddConstraint(
            model_name="autonomyproposal",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("pattern__isnull", True), ("policy__isnull", False)),
                    models.Q(("pattern__isnull", False), ("policy__isnull", True)),
                    _connector="OR",
                ),
                name="proposal_has_one_target",
            ),
        ),
        migrations.AddConstraint(
            model_name="autonomyproposal",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(
                        ("change", "raise_level"),
                        (
                            "to_level",
                            django.db.models.expressions.CombinedExpression(
                                models.F("from_level"), "+", models.Value(1)
                            ),
                        ),
                    ),
                    models.Q(
                        ("change", "drop_approval"),
                        ("pattern__isnull", True),
                        ("to_level", models.F("from_level")),
                    ),
                    _connector="OR",
                ),
                name="proposal_is_one_step",
            ),
        ),
        migrations.AddConstraint(
            model_name="autonomyproposal",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("decided_at__isnull", True), ("status", "proposed")),
                    models.Q(
                        models.Q(("status", "proposed"), _negated=True),
                        ("decided_at__isnull", False),
                    ),
                    _connector="OR",
                ),
                name="proposal_decided_when_closed",
            ),
        ),
        migrations.AddConstraint(
            model_name="autonomyproposal",
            constraint=models.UniqueConstraint(
                condition=models.Q(("status", "proposed")),
                fields=("policy",),
                name="one_open_proposal_per_policy",
            ),
        ),
        migrations.AddConstraint(
            model_name="autonomyproposal",
            constraint=models.UniqueConstraint(
                condition=models.Q(("status", "proposed")),
                fields=("pattern",),
                name="one_open_proposal_per_pattern",
            ),
        ),
        migrations.AddConstraint(
            model_name="autonomyproposal",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("change__in", ["drop_approval", "raise_level"]),
                    ("change__isnull", True),
                    _connector="OR",
                ),
                name="governance_autonomyproposal_change_allowed",
            ),
        ),
        migrations.AddConstraint(
            model_name="autonomyproposal",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("from_level__in", [0, 1, 2, 3]), ("from_level__isnull", True), _connector="OR"
                ),
                name="governance_autonomyproposal_from_level_allowed",
            ),
        ),
        migrations.AddConstraint(
            model_name="autonomyproposal",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("to_level__in", [0, 1, 2, 3]), ("to_level__isnull", True), _connector="OR"
                ),
                name="governance_autonomyproposal_to_level_allowed",
            ),
        ),
        migrations.AddConstraint(
            model_name="autonomyproposal",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("status__in", ["accepted", "dismissed", "proposed", "superseded"]),
                    ("status__isnull", True),
                    _connector="OR",
                ),
                name="governance_autonomyproposal_status_allowed",
            ),
        ),
        migrations.AddConstraint(
            model_name="patternautonomy",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("autonomy_level__in", [0, 1, 2, 3]), ("autonomy_level__gte", 1)),
                    ("autonomy_level__isnull", True),
                    _connector="OR",
                ),
                name="governance_patternautonomy_autonomy_level_allowed",
            ),
        ),
        migrations.RunPython(grant_and_schedule, unschedule),
    ]
