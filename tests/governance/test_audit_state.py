"""Issue 20, item 8: every governed row equals its last audited state, and `verify_audit
--state` names each row edited in the database without Warden (the issue's "direct SQL edits
to policies, runbooks, approvals or executions are invisible to verify_audit")."""

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from governance.models import ApprovalRequest, AuditEvent, Pause, PauseScope, Policy
from governance.pauses.actions import pause_automation
from remediation.models import Execution, Runbook

# Execution mechanics: self-healing trusts from the first ticket (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("trusting_policies")


def verify_state(capsys) -> list[str]:
    """The rows `verify_audit --state` names ([] when intact)."""
    capsys.readouterr()
    try:
        call_command("verify_audit", state=True)
    except CommandError as broken:
        assert broken.returncode == 1
        assert "Governed state BROKEN" in str(broken)
        return capsys.readouterr().err.splitlines()
    assert "Governed state intact" in capsys.readouterr().out
    return []


@pytest.fixture
def world(agent, alice, bob, carol, api, capsys):
    """Rows made before the flow (the seed, the personas) recorded once as checked, then a
    flow through the product: a disk fix run and reported, a firewall change approved by two
    people, a pause taken."""
    call_command("verify_audit", record_state="the test's starting state, checked")
    assert verify_state(capsys) == []

    agent.post_metrics(agent.sample("disk"))
    for action in agent.take_actions():
        assert agent.report(action).status_code == 200
    [result] = agent.post_metrics(agent.sample("firewall")).json()["results"]
    request = ApprovalRequest.objects.get(ticket__ticket_id=result["ticket_id"])
    for person in (bob, carol):
        response = api(person).post(f"/api/v1/approvals/{request.pk}/approve", {"reason": "ok"})
        assert response.status_code == 200, response.content
    pause_automation(
        Pause(scope=PauseScope.CATEGORY, category="dns"),
        actor=alice,
        reason="dns provider incident",
        now=timezone.now(),
    )
    assert Execution.objects.exists() and Pause.objects.exists()
    return request


def test_a_flow_through_the_product_leaves_every_governed_row_as_audited(world, capsys):
    assert verify_state(capsys) == []
    assert AuditEvent.objects.exclude(object_state="").filter(object_type="Execution").exists()


def test_rows_made_outside_warden_are_named_as_never_audited(db, capsys):
    # Code that saves a user is audited (governance.people.tracking); SQL is not.
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO auth_user (username, password, is_superuser, is_staff, is_active, "
            "first_name, last_name, email, date_joined) "
            "VALUES ('mallory', '', %s, %s, %s, '', '', '', %s)",
            [True, True, True, timezone.now()],
        )
    lines = verify_state(capsys)
    assert any(
        line.startswith("auth.User ") and "'mallory': never audited" in line for line in lines
    )


def test_direct_sql_edits_of_governed_rows_are_each_named(world, alice, capsys):
    policy = Policy.objects.get(category="disk", enabled=True)
    runbook = Runbook.objects.filter(executions__isnull=False).first()
    execution = Execution.objects.first()
    pause = Pause.objects.get()
    mallory = User.objects.get(username="alice")
    approvers = Group.objects.get(name="approvers")
    request = world
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE governance_policy SET autonomy_level = %s WHERE id = %s",
            [0 if policy.autonomy_level else 1, policy.pk],
        )
        cursor.execute(
            "UPDATE remediation_runbook SET argv = %s WHERE id = %s",
            ['["rm", "-rf", "/"]', runbook.pk],
        )
        cursor.execute(
            "INSERT INTO governance_approval (request_id, approver_id, verdict, comment, "
            "created_at) VALUES (%s, %s, 'approve', '', %s)",
            [request.pk, alice.pk, timezone.now()],
        )
        cursor.execute(
            "UPDATE remediation_execution SET state = 'succeeded' WHERE id = %s", [execution.pk]
        )
        cursor.execute("DELETE FROM governance_pause WHERE id = %s", [pause.pk])
        cursor.execute(
            "INSERT INTO auth_user_groups (user_id, group_id) VALUES (%s, %s)",
            [mallory.pk, approvers.pk],
        )

    lines = verify_state(capsys)
    print("\n".join(lines))  # the command's output, for the record
    changed = "changed since its last audited state (event "
    assert any(
        line.startswith(f"governance.Policy {policy.pk} '{policy.name}': {changed}")
        for line in lines
    )
    assert any(
        line.startswith(f"remediation.Runbook {runbook.pk} '{runbook.name}': {changed}")
        for line in lines
    )
    assert any(
        line.startswith(f"governance.ApprovalRequest {request.pk}: {changed}") for line in lines
    )
    assert any(
        line.startswith(f"remediation.Execution {execution.pk}: {changed}") for line in lines
    )
    assert any(
        line.startswith(f"governance.Pause {pause.pk}: deleted since its last audited state")
        for line in lines
    )
    assert any(line.startswith(f"auth.User {mallory.pk} 'alice': {changed}") for line in lines)
    assert len(lines) == 6, lines


def test_a_token_inserted_or_extended_by_sql_is_named(world, bob, capsys):
    from knox.models import AuthToken

    token = AuthToken.objects.filter(user=bob).first()
    AuthToken.objects.filter(pk=token.pk).update(expiry=None)  # a token made to last forever
    issued = AuditEvent.objects.get(action="token.issued", data__token_key=token.token_key)
    lines = verify_state(capsys)
    assert lines == [
        f"knox.AuthToken {token.token_key} 'bob': person or expiry changed since it was issued "
        f"(event {issued.sequence})"
    ]


def test_rows_checked_by_an_operator_are_recorded_with_a_reason_and_then_verify(world, capsys):
    pause = Pause.objects.get()
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM governance_pause WHERE id = %s", [pause.pk])
    assert len(verify_state(capsys)) == 1

    with pytest.raises(CommandError, match="say why"):
        call_command("verify_audit", record_state=" ")
    call_command("verify_audit", record_state="pause removed during the restore of 12 May")

    assert verify_state(capsys) == []
    recorded = AuditEvent.objects.get(
        action="state.recorded", object_type="Pause", object_id=str(pause.pk)
    )
    assert recorded.object_state == "deleted"
    assert recorded.data["reason"] == "pause removed during the restore of 12 May"
