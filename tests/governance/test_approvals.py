"""Who may approve what: approvers only, never their own request, two for critical actions."""

import pytest
from django.utils import timezone

from governance.approvals.actions import approve_request, reject_request
from governance.approvals.requests import ApprovalError
from governance.models import ApprovalRequest, AuditEvent
from remediation.models import Execution


@pytest.fixture
def pending(agent):
    [result] = agent.post_metrics(agent.sample("firewall")).json()["results"]
    return ApprovalRequest.objects.get(ticket__ticket_id=result["ticket_id"])


@pytest.mark.parametrize(
    ("persona", "status_code"),
    # anonymous: 401, told to authenticate (WWW-Authenticate: Token)
    [("alice", 200), ("bob", 200), ("dave", 403), (None, 401)],
)
def test_only_supervisors_and_approvers_may_approve(request, client, pending, persona, status_code):
    if persona:
        client.force_login(request.getfixturevalue(persona))
    response = client.post(
        f"/api/v1/approvals/{pending.pk}/approve", data={}, content_type="application/json"
    )
    assert response.status_code == status_code
    if status_code in (401, 403):
        assert not pending.approvals.exists()


def test_nobody_approves_their_own_request(pending, bob):
    pending.requested_by = bob
    pending.save()
    with pytest.raises(ApprovalError) as error:
        approve_request(pending, actor=bob, reason="", now=timezone.now())
    assert error.value.code == "own_request"


def test_the_same_approver_cannot_count_twice(pending, bob):
    approve_request(pending, actor=bob, reason="", now=timezone.now())
    with pytest.raises(ApprovalError) as error:
        approve_request(pending, actor=bob, reason="again", now=timezone.now())
    assert error.value.code == "already_decided"
    pending.refresh_from_db()
    assert pending.status == "pending"
    assert not Execution.objects.exists()


def test_an_expired_request_cannot_be_approved(pending, bob):
    with pytest.raises(ApprovalError) as error:
        approve_request(pending, actor=bob, reason="", now=pending.expires_at)
    assert error.value.code == "expired"


def test_a_decided_request_is_answered_with_409(client, pending, bob, carol, alice):
    for user in (bob, carol):
        approve_request(pending, actor=user, reason="", now=timezone.now())
    client.force_login(alice)
    response = client.post(
        f"/api/v1/approvals/{pending.pk}/approve", data={}, content_type="application/json"
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_pending"


def test_every_verdict_is_audited_with_its_comment(pending, bob):
    approve_request(pending, actor=bob, reason="change window open", now=timezone.now())
    audited = AuditEvent.objects.get(action="approval.approved")
    assert audited.actor == "user:bob"
    assert audited.data["comment"] == "change window open"


def test_a_rejection_needs_a_note(pending, bob, client):
    with pytest.raises(ApprovalError) as error:
        reject_request(pending, actor=bob, reason="  ", now=timezone.now())
    assert error.value.code == "note_required"
    client.force_login(bob)
    response = client.post(
        f"/api/v1/approvals/{pending.pk}/reject", data={}, content_type="application/json"
    )
    assert response.status_code == 400
    assert "comment" in response.json()["error"]["fields"]
    pending.refresh_from_db()
    assert pending.status == "pending"
