"""The database refuses what the rules refuse, whichever way a value comes in.

Generated from the models: a field added later with choices or bounds is covered
without editing this file.
"""

import json
from datetime import timedelta

import pytest
from django.apps import apps
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from config.db_checks import FieldCheck
from feedback.actions import give_feedback
from feedback.models import Feedback
from governance.models import (
    Approval,
    ApprovalRequest,
    AutonomyProposal,
    PatternAutonomy,
    Pause,
    Policy,
)
from governance.notices.delivery import deliver_due
from governance.notices.links import read_link, sign_link
from governance.notices.views import give_verdict
from governance.pauses.actions import pause_automation
from governance.people.actions import add_service_user
from remediation.actions import save_automation_target
from remediation.alert_payloads import AlertReport
from remediation.alerts import receive_alert
from remediation.models import AutomationTarget, Ticket
from scoring.models import MetricSample

# Execution mechanics: self-healing trusts from the first ticket (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("trusting_policies")

PROJECT_APPS = ("governance", "remediation", "scoring", "feedback")


def bounded_fields():
    for model in apps.get_models():
        if model._meta.app_label not in PROJECT_APPS or model.__name__.startswith("Historical"):
            continue
        for field in model._meta.local_fields:
            if field.primary_key or field.is_relation:
                continue
            declared = [
                v for v in field._validators if isinstance(v, MinValueValidator | MaxValueValidator)
            ]
            if field.choices or declared:
                yield model, field


def out_of_bounds(field) -> object:
    """A value the field's rule refuses."""
    for validator in field._validators:
        if isinstance(validator, MaxValueValidator):
            return validator.limit_value + 1
        if isinstance(validator, MinValueValidator):
            return validator.limit_value - 1
    return 99 if isinstance(field.choices[0][0], int) else "bogus"


FIELDS = sorted(bounded_fields(), key=lambda pair: (pair[0]._meta.label, pair[1].name))


@pytest.mark.parametrize(
    ("model", "field"), FIELDS, ids=[f"{m._meta.label}.{f.name}" for m, f in FIELDS]
)
def test_every_bounded_field_has_its_check_in_the_database(model, field):
    names = {constraint.name for constraint in model._meta.constraints}
    expected = f"{model._meta.app_label}_{model.__name__.lower()}_{field.attname}_allowed"
    assert expected in names, f"{model.__name__} needs @checked_in_database"


@pytest.mark.parametrize(
    ("model", "field"), FIELDS, ids=[f"{m._meta.label}.{f.name}" for m, f in FIELDS]
)
def test_full_clean_refuses_a_value_past_the_bounds_naming_the_field(model, field, db):
    # Forms, serializers and record_change validate this way before the database sees it.
    instance = model(**{field.attname: out_of_bounds(field)})
    with pytest.raises(ValidationError) as refused:
        instance.full_clean(validate_unique=False)
    assert field.name in refused.value.message_dict


def test_validating_a_policy_does_not_ask_the_database_once_per_field(db):
    # The generated checks repeat clean_fields' rules: asking PostgreSQL for each (a
    # query and a savepoint apiece) was most of the cost of saving a policy.
    policy = Policy.objects.get(name="disk-self-healing")
    checks = sum(isinstance(c, FieldCheck) for c in Policy._meta.constraints)
    with CaptureQueriesContext(connection) as queries:
        policy.full_clean()
    assert checks >= 10
    assert len(queries) < 5, [query["sql"] for query in queries]


def test_the_generated_list_covers_the_engines_inputs():
    covered = {f"{m.__name__}.{f.name}" for m, f in FIELDS}
    assert {
        "Policy.autonomy_level",
        "Policy.min_confidence_score",
        "Policy.required_approvals",
        "Policy.max_actions_per_hour",
        "Ticket.severity",
        "Ticket.confidence",
        "MetricSample.cpu_usage",
        "ApprovalRequest.required_approvals",
    } <= covered


def test_an_update_past_the_bounds_is_refused(agent, other_agent, alice, bob, triage_model):
    # rows of every kind, made the way people and agents make them
    agent.post_metrics(agent.sample("disk"))
    # the disk fix runs and fresh metrics verify it: Warden acted by itself, a review opens
    [action] = agent.take_actions()
    agent.report(action)
    agent.post_metrics(agent.sample())
    other_agent.post_metrics(other_agent.sample("dns"))
    now = timezone.now()
    request = ApprovalRequest.objects.get()
    # bob approves from his notice's link (a link used), and the notices go out (deliveries)
    link = read_link(sign_link(request.pk, "approve", bob.pk))
    give_verdict(link, request, bob, "checked", now)
    deliver_due(now + timedelta(minutes=5))
    pause_automation(Pause(scope="all"), actor=alice, reason="change freeze", now=now)
    give_feedback(
        Feedback(ticket=Ticket.objects.first(), feedback_type="positive", rating=5),
        actor=alice,
        reason="",
        now=timezone.now(),
    )
    # a pattern lowered after failed fixes, and a proposal to raise it (governance.promotions)
    pattern = Ticket.objects.exclude(pattern=None).first().pattern
    PatternAutonomy.objects.create(pattern=pattern, reason="two failed fixes")
    AutonomyProposal.objects.create(
        pattern=pattern, change="raise_level", from_level=1, to_level=2, summary="earned"
    )
    # an alert counted on the disk ticket, and an automation system a runbook may run on
    sender = add_service_user(
        "alertmanager", actor=None, reason="monitoring", now=now, role="alert senders"
    )
    report = AlertReport("alertmanager", "a1b2c3d4e5f60718", "firing", "web-01", "disk", "Full")
    receive_alert(report, user=sender, now=now)
    target = AutomationTarget(
        name="awx", kind="awx", url="https://awx.example.com/api/v2/job_templates/7/launch/",
        secret_env="WARDEN_TARGET_AWX_SECRET",
    )  # fmt: skip
    save_automation_target(target, actor=alice, reason="AWX runs disk fixes", now=now)
    # One set-up for every field (it is most of the cost), each update in its own savepoint.
    missing, accepted = set(), []
    for model, field in FIELDS:
        rows = model.objects.all()
        if not rows.exists():
            missing.add(model.__name__)
            continue
        try:
            with transaction.atomic():
                rows.update(**{field.attname: out_of_bounds(field)})
        except IntegrityError:
            continue
        accepted.append(f"{model.__name__}.{field.name}")
    assert not missing, f"the setup makes no {', '.join(sorted(missing))}: add one"
    assert accepted == [], "the database took values past these fields' bounds"


def test_autonomy_level_4_is_refused_by_save_update_and_loaddata(db, tmp_path):
    policy = Policy.objects.get(category="disk", enabled=True)

    with pytest.raises(IntegrityError), transaction.atomic():
        Policy.objects.filter(pk=policy.pk).update(autonomy_level=4)

    policy.autonomy_level = 4
    with pytest.raises(IntegrityError), transaction.atomic():
        policy.save()  # no full_clean: only the database stands in the way

    fixture = tmp_path / "policy.json"
    fixture.write_text(
        json.dumps(
            [
                {
                    "model": "governance.policy",
                    "pk": policy.pk,
                    "fields": {"name": policy.name, "category": "disk", "autonomy_level": 4},
                }
            ]
        )
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        call_command("loaddata", str(fixture), verbosity=0)
    policy.refresh_from_db()
    assert policy.autonomy_level != 4


def test_a_second_open_ticket_for_a_host_and_category_is_refused(agent):
    agent.post_metrics(agent.sample("disk"))
    ticket = Ticket.objects.get()
    with pytest.raises(IntegrityError), transaction.atomic():
        Ticket.objects.create(
            ticket_id="INC-999999",
            title="copy",
            host=ticket.host,
            category=ticket.category,
            opened_at=ticket.opened_at,
            last_seen_at=ticket.last_seen_at,
        )


def test_a_second_verdict_by_one_approver_is_refused(agent, bob):
    agent.post_metrics(agent.sample("dns"))
    request = ApprovalRequest.objects.get()
    Approval.objects.create(request=request, approver=bob, verdict="approve", comment="ok")
    with pytest.raises(IntegrityError), transaction.atomic():
        Approval.objects.create(request=request, approver=bob, verdict="approve", comment="again")


def test_one_sample_per_host_and_instant(agent):
    agent.post_metrics([agent.sample()])
    sample = MetricSample.objects.get()
    sample.pk = None
    with pytest.raises(IntegrityError), transaction.atomic():
        sample.save()
