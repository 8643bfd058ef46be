"""Notices that reach people (governance.notices.delivery): the outbox of what to tell, the messages
sent, the approve and reject links used, and the schedule that sends what has waited long
enough and retries what failed."""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


def schedule_deliveries(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.update_or_create(
        name="warden-notices",
        defaults={
            "func": "governance.notices.delivery.deliver_due",
            "schedule_type": "I",
            "minutes": 1,
            "repeats": -1,
        },
    )


def unschedule_deliveries(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name="warden-notices").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("governance", "0011_decision_probabilities"),
        ("remediation", "0007_execution_binds_to_what_was_decided"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [
        migrations.CreateModel(
            name="NoticeDelivery",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("approval_requested", "Approval needed"),
                            ("escalated", "Escalated to people"),
                            ("l2_action", "Acted at L2 (people notified)"),
                            ("action_failed", "Action failed"),
                            ("verification_failed", "Verification failed"),
                            ("rolled_back", "Rolled back"),
                            ("rollback_failed", "Rollback failed"),
                        ],
                        max_length=30,
                    ),
                ),
                ("digest", models.BooleanField(default=False)),
                (
                    "status",
                    models.CharField(
                        choices=[("pending", "Pending"), ("sent", "Sent"), ("failed", "Failed")],
                        default="pending",
                        max_length=10,
                    ),
                ),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("emailed", models.JSONField(blank=True, default=list)),
                ("posted_at", models.DateTimeField(blank=True, null=True)),
                ("attempts", models.PositiveSmallIntegerField(default=0)),
                ("lease_until", models.DateTimeField(blank=True, null=True)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                ("last_error", models.CharField(blank=True, max_length=500)),
            ],
            options={
                "verbose_name_plural": "notice deliveries",
                "ordering": ["-created_at"],
                "indexes": [
                    models.Index(
                        condition=models.Q(("status", "pending")),
                        fields=["created_at"],
                        name="notice_delivery_pending",
                    )
                ],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(
                            (
                                "kind__in",
                                [
                                    "action_failed",
                                    "approval_requested",
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
                    models.CheckConstraint(
                        condition=models.Q(
                            ("status__in", ["failed", "pending", "sent"]),
                            ("status__isnull", True),
                            _connector="OR",
                        ),
                        name="governance_noticedelivery_status_allowed",
                    ),
                ],
            },
        ),
        migrations.CreateModel(
            name="Notice",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("approval_requested", "Approval needed"),
                            ("escalated", "Escalated to people"),
                            ("l2_action", "Acted at L2 (people notified)"),
                            ("action_failed", "Action failed"),
                            ("verification_failed", "Verification failed"),
                            ("rolled_back", "Rolled back"),
                            ("rollback_failed", "Rollback failed"),
                        ],
                        max_length=30,
                    ),
                ),
                ("audit_sequence", models.PositiveBigIntegerField(unique=True)),
                ("host_name", models.CharField(blank=True, max_length=253)),
                ("summary", models.TextField(blank=True)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "approval_request",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="governance.approvalrequest",
                    ),
                ),
                (
                    "execution",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="remediation.execution",
                    ),
                ),
                (
                    "ticket",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="remediation.ticket",
                    ),
                ),
                (
                    "delivery",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="notices",
                        to="governance.noticedelivery",
                    ),
                ),
            ],
            options={
                "ordering": ["created_at", "pk"],
                "indexes": [
                    models.Index(
                        condition=models.Q(("delivery__isnull", True)),
                        fields=["kind", "created_at"],
                        name="notice_waiting",
                    )
                ],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(
                            (
                                "kind__in",
                                [
                                    "action_failed",
                                    "approval_requested",
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
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="NoticeLinkUse",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("nonce", models.CharField(max_length=32)),
                (
                    "verdict",
                    models.CharField(
                        choices=[("approve", "Approve"), ("reject", "Reject")], max_length=10
                    ),
                ),
                ("used_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("outcome", models.CharField(blank=True, max_length=500)),
                (
                    "approval_request",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="governance.approvalrequest",
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "ordering": ["-used_at"],
                "constraints": [
                    models.UniqueConstraint(fields=("nonce", "user"), name="notice_link_used_once"),
                    models.CheckConstraint(
                        condition=models.Q(
                            ("verdict__in", ["approve", "reject"]),
                            ("verdict__isnull", True),
                            _connector="OR",
                        ),
                        name="governance_noticelinkuse_verdict_allowed",
                    ),
                ],
            },
        ),
        migrations.RunPython(schedule_deliveries, unschedule_deliveries),
    ]
