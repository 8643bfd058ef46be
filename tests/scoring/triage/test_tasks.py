"""Retraining and re-scoring run as django-q2 tasks, recording their progress and the
candidate's comparison with the serving version on the same recent tickets."""

import pytest
from django.utils import timezone

from governance.models import AuditEvent
from scoring import tasks
from scoring.models import TriageModelVersion
from scoring.triage import candidates
from scoring.triage.candidates import compare_with_serving
from scoring.triage.registry import register_triage_result

DNS_LOCAL = ("DNS lookups slow on web-2", "systemd-resolved stuck on this host only, flush it")
DISK = ("Disk almost full on db-3", "/var at 97%, temp files and old logs")


@pytest.fixture
def recent(make_ticket):
    """Recent tickets: one fixed as its words suggest, one fixed by a riskier runbook than its
    words suggest (people switched resolvers), one still open."""
    return [
        make_ticket(*DISK, category="disk", fixed_by="clean-temp-and-rotate-logs"),
        make_ticket(*DNS_LOCAL, category="dns", fixed_by="switch-dns-resolver"),
        make_ticket("nginx 502 on shop", "restart web", category="server", status="open"),
    ]


def test_the_comparison_scores_both_versions_on_the_same_tickets(
    triage_model, trained_triage_model, recent
):
    candidate = register_triage_result(trained_triage_model, actor="system:test")

    comparison = compare_with_serving(candidate, now=timezone.now(), actor="user:alice")

    candidate.refresh_from_db()
    assert candidate.comparison == comparison
    assert comparison["serving_version_id"] == triage_model.pk
    assert comparison["tickets"] == 3
    # The same pipeline on both sides: they agree everywhere.
    assert comparison["agreement"] == 1.0
    assert comparison["disagreements"] == []
    for side in ("candidate", "serving"):
        # Two tickets' fixes are known; the disk one is right, the DNS one is unsafe.
        assert comparison[side]["known"] == 2
        assert comparison[side]["accuracy_on_known"] == 0.5
        assert comparison[side]["unsafe_suggestions"] == 1
    assert candidate.progress["stage"] == "compared"
    assert (candidate.progress["done"], candidate.progress["total"]) == (3, 3)
    [compared] = AuditEvent.objects.filter(action="triage_model.compared")
    assert (compared.actor, compared.object_id) == ("user:alice", str(candidate.pk))


def test_progress_is_recorded_batch_by_batch(
    triage_model, trained_triage_model, recent, monkeypatch
):
    candidate = register_triage_result(trained_triage_model, actor="system:test")
    seen = []
    original = candidates.set_progress

    def record(version, now, **progress):
        seen.append((progress["stage"], progress.get("done")))
        original(version, now, **progress)

    monkeypatch.setattr(candidates, "set_progress", record)

    compare_with_serving(candidate, now=timezone.now(), batch=1)

    assert seen == [
        ("comparing", 0),
        ("comparing", 1),
        ("comparing", 2),
        ("comparing", 3),
        ("compared", 3),
    ]


def test_the_retraining_task_registers_a_compared_candidate(triage_model, recent):
    candidate_id = tasks.retrain_triage_model(actor="user:alice")

    candidate = TriageModelVersion.objects.get(pk=candidate_id)
    assert (candidate.status, candidate.version) == ("candidate", triage_model.version + 1)
    assert candidate.params["history_tickets"] == 2  # the resolved ones
    assert candidate.comparison["serving_version"] == triage_model.version
    assert candidate.comparison["tickets"] == 3
    assert candidate.progress["stage"] == "compared"


def test_the_comparison_task_tolerates_a_version_that_is_gone_or_serving(triage_model):
    assert tasks.compare_triage_candidate(999_999) is None
    assert tasks.compare_triage_candidate(triage_model.pk) is None


CHANGELIST = "/admin/scoring/triagemodelversion/"


def test_a_supervisor_queues_a_comparison_then_sees_it_before_approving(
    client, alice, triage_model, trained_triage_model, recent, django_capture_on_commit_callbacks
):
    candidate = register_triage_result(trained_triage_model, actor="system:test")
    client.force_login(alice)
    chosen = {"action": "compare_action", "_selected_action": [candidate.pk]}

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(CHANGELIST, {**chosen, "confirmed": "yes", "note": ""})

    assert response.status_code == 302
    [requested] = AuditEvent.objects.filter(action="triage_model.comparison_requested")
    assert (requested.actor, requested.object_id) == ("user:alice", str(candidate.pk))
    page = client.get(f"{CHANGELIST}{candidate.pk}/change/").content.decode()
    assert f"agreement with v{triage_model.version}: 100.0%" in page
    assert "Unsafe suggestions (after abstaining)" in page
    assert "Accuracy on resolved tickets" in page
    assert "compared: 3/3" in page
    approve = {"action": "approve_action", "_selected_action": [candidate.pk]}
    client.post(CHANGELIST, {**approve, "confirmed": "yes", "note": "compared, same figures"})
    candidate.refresh_from_db()
    assert candidate.status == "approved"


def test_the_admin_refuses_an_approval_without_a_comparison(
    client, alice, triage_model, trained_triage_model
):
    candidate = register_triage_result(trained_triage_model, actor="system:test")
    client.force_login(alice)
    approve = {"action": "approve_action", "_selected_action": [candidate.pk]}

    response = client.post(
        CHANGELIST, {**approve, "confirmed": "yes", "note": "trust me"}, follow=True
    )

    assert "was not compared with the serving" in response.content.decode()
    candidate.refresh_from_db()
    assert candidate.status == "candidate"


def test_the_serving_version_is_not_compared_with_itself(client, alice, triage_model):
    client.force_login(alice)
    chosen = {"action": "compare_action", "_selected_action": [triage_model.pk]}

    response = client.post(CHANGELIST, {**chosen, "confirmed": "yes", "note": ""}, follow=True)

    assert "is the serving version" in response.content.decode()
    triage_model.refresh_from_db()
    assert triage_model.progress == {}
