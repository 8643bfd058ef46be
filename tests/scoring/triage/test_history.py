"""What Warden's own tickets teach the triage model: people's word on what fixed them."""

from datetime import timedelta

from django.contrib.auth.models import User
from django.utils import timezone

from feedback.models import Feedback
from scoring.triage.history import resolved_tickets_since


def _said(ticket, actions, *, from_service=False, superseded=False):
    author = User.objects.create_user(f"author-{Feedback.objects.count()}")
    return Feedback.objects.create(
        ticket=ticket,
        submitted_by=author,
        feedback_type="negative",
        actual_actions_taken=actions,
        from_service=from_service,
        superseded_at=timezone.now() if superseded else None,
    )


def _label(ticket):
    since = timezone.now() - timedelta(days=1)
    return {t.pk: t for t in resolved_tickets_since(since)}[ticket.pk]


def test_a_persons_feedback_names_the_runbook_that_really_fixed_it(make_ticket):
    ticket = make_ticket("app slow", "memory keeps growing", "memory", fixed_by=None)
    _said(ticket, ["restart-leaking-service"])
    assert _label(ticket).runbook == "restart-leaking-service"


def test_a_services_feedback_or_a_withdrawn_one_teaches_nothing(make_ticket):
    ticket = make_ticket(
        "disk full", "/var full of old logs", "disk", fixed_by="clean-temp-and-rotate-logs"
    )
    # An integrator's token, or a verdict its author replaced, may not relabel the fix.
    _said(ticket, ["switch-dns-resolver"], from_service=True)
    _said(ticket, ["apply-firewall-change"], superseded=True)
    labelled = _label(ticket)
    assert labelled.runbook == "clean-temp-and-rotate-logs"
    assert labelled.category == "disk"
