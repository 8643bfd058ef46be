"""The console's controls, without a browser: each POST checks the admin's permission, needs
the CSRF token, names the field it refuses, and writes the same audit events as the admin."""

from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.utils import timezone

from governance.console.panels import policy_reasons
from governance.console.views import pause_preview
from governance.models import ApprovalRequest, AuditEvent, Pause
from governance.pauses.actions import pause_automation
from remediation.actions import save_runbook
from remediation.models import Execution, Runbook, Ticket

PAUSE = "/console/pauses"


def csrf_client(user) -> Client:
    """A browser as the console's: CSRF enforced, signed in, holding its token."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.get("/console/")  # sets the CSRF cookie, as opening the console does
    return client


def post(client: Client, url: str, data: dict, *, token: bool = True):
    headers = {"X-CSRFToken": client.cookies["csrftoken"].value} if token else {}
    return client.post(url, data, headers=headers)


def actions_since(sequence: int) -> list[tuple[str, str]]:
    return list(
        AuditEvent.objects.filter(sequence__gt=sequence)
        .order_by("sequence")
        .values_list("action", "actor")
    )


def last_sequence() -> int:
    return AuditEvent.objects.order_by("-sequence").values_list("sequence", flat=True).first() or 0


# --- Pause and resume ------------------------------------------------------------------


def test_a_supervisor_pauses_a_category_with_an_end_time_as_the_admin_would(alice):
    client = csrf_client(alice)
    before = last_sequence()
    ends = timezone.now() + timedelta(hours=2)

    response = post(
        client,
        PAUSE,
        {
            "scope": "category",
            "category": "disk",
            "reason": "vendor incident",
            "ends_at": ends.isoformat(),
        },
    )

    assert response.status_code == 200, response.content
    pause = Pause.objects.get()
    assert (pause.scope, pause.category, pause.reason, pause.created_by) == (
        "category",
        "disk",
        "vendor incident",
        alice,
    )
    assert abs(pause.ends_at - ends) < timedelta(seconds=1)
    assert actions_since(before) == [("automation.paused", "user:alice")]
    # and the console shows it paused, with Resume
    panels = client.get("/console/panels").content.decode()
    assert f'data-pause="{pause.pk}"' in panels and "vendor incident" in panels
    assert f"/console/pauses/{pause.pk}/resume" in panels


def test_a_supervisor_resumes_a_named_pause_and_the_audit_says_why(alice):
    pause = pause_automation(Pause(scope="all"), actor=alice, reason="freeze", now=timezone.now())
    client = csrf_client(alice)
    before = last_sequence()

    response = post(client, f"/console/pauses/{pause.pk}/resume", {"reason": "freeze over"})

    assert response.status_code == 200, response.content
    pause.refresh_from_db()
    assert pause.resumed_by == alice and pause.resumed_at is not None
    assert actions_since(before) == [("automation.resumed", "user:alice")]
    assert AuditEvent.objects.get(action="automation.resumed").data["note"] == "freeze over"
    assert f'data-pause="{pause.pk}"' not in client.get("/console/panels").content.decode()


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"scope": "category", "reason": "x"}, "category"),
        ({"scope": "host", "host": "no-such-host", "reason": "x"}, "host"),
        ({"scope": "all", "reason": "   "}, "reason"),
        ({"scope": "everything", "reason": "x"}, "scope"),
        ({"scope": "all", "reason": "x", "ends_at": "yesterday"}, "ends_at"),
        ({"scope": "all", "reason": "x", "ends_at": "2020-01-01T00:00:00Z"}, "ends_at"),
    ],
)
def test_bad_pause_input_is_a_400_naming_the_field_and_pauses_nothing(alice, data, field):
    response = post(csrf_client(alice), PAUSE, data)

    assert response.status_code == 400
    error = response.json()["error"]
    assert field in error["fields"] and error["message"].startswith(f"{field}:")
    assert not Pause.objects.exists()


def test_a_post_without_the_csrf_token_is_refused(alice):
    response = post(csrf_client(alice), PAUSE, {"scope": "all", "reason": "x"}, token=False)

    assert response.status_code == 403
    assert not Pause.objects.exists()


def test_compliance_sees_no_controls_and_a_forged_post_gets_403(alice, dave):
    pause = pause_automation(Pause(scope="all"), actor=alice, reason="freeze", now=timezone.now())
    client = csrf_client(dave)

    page = client.get("/console/").content.decode()
    assert "data-control=" not in page and 'id="pause-fields"' not in page
    for url, data in [
        (PAUSE, {"scope": "all", "reason": "forged"}),
        (f"/console/pauses/{pause.pk}/resume", {"reason": "forged"}),
        ("/console/executions/1/rollback", {"reason": "forged"}),
        ("/console/tickets/T-1/override", {"decide": "close", "reason": "forged"}),
        ("/console/tickets/T-1/override", {"decide": "runbook", "runbook": "x", "reason": "f"}),
    ]:
        assert post(client, url, data).status_code in (403, 404), url
    assert post(client, PAUSE, {"scope": "all", "reason": "forged"}).status_code == 403
    assert post(client, f"/console/pauses/{pause.pk}/resume", {"reason": "f"}).status_code == 403
    pause.refresh_from_db()
    assert pause.resumed_at is None and Pause.objects.count() == 1


def test_the_pause_dialog_says_what_it_will_change():
    ends = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)
    assert pause_preview("category", category="disk", ends_at=ends, hosts=8).startswith(
        "Pauses automation for category disk on all 8 hosts until 2026-12-07 15:00 UTC"
    )
    assert pause_preview("all", ends_at=None, hosts=1).startswith(
        "Pauses all automation on the one host until someone resumes it"
    )
    assert pause_preview("host", host_name="web-01", ends_at=None, hosts=8).startswith(
        "Pauses automation for every category on host web-01 until someone resumes it"
    )


def test_the_pause_preview_names_the_hosts_and_the_end_in_utc(alice, agent):
    client = csrf_client(alice)
    response = client.get(
        "/console/pauses/preview",
        {"scope": "category", "category": "disk", "ends_at": "2099-12-07T15:00:00+01:00"},
    )

    assert response.status_code == 200
    assert response.json()["preview"].startswith(
        "Pauses automation for category disk on the one host until 2099-12-07 14:00 UTC"
    )
    assert not Pause.objects.exists()


# --- Rollback ------------------------------------------------------------------------------


@pytest.fixture
def healed(agent, trusting_policies) -> Execution:
    """A disk clean-up that ran and was verified."""
    agent.post_metrics(agent.sample("disk"))
    [action] = agent.take_actions()
    agent.report(action)
    agent.post_metrics(agent.sample())
    execution = Execution.objects.get()
    assert execution.state == "succeeded"
    return execution


def test_a_supervisor_rolls_back_a_verified_fix_as_the_admin_would(agent, alice, healed):
    client = csrf_client(alice)
    panels = client.get("/console/panels").content.decode()
    assert f"/console/executions/{healed.pk}/rollback" in panels
    before = last_sequence()

    with agent.capture(execute=True):
        response = post(
            client, f"/console/executions/{healed.pk}/rollback", {"reason": "removed a needed file"}
        )

    assert response.status_code == 200, response.content
    healed.refresh_from_db()
    assert healed.state == "rollback_pending"
    assert ("execution.rollback_pending", "user:alice") in actions_since(before)
    [action] = agent.take_actions()
    assert action["action"] == healed.runbook.rollback_action
    # and a second rollback is refused with why, not a server error
    again = post(client, f"/console/executions/{healed.pk}/rollback", {"reason": "again"})
    assert again.status_code == 409 and "rolled back" in again.json()["error"]["message"]


def test_a_rollback_needs_a_reason(alice, healed):
    response = post(csrf_client(alice), f"/console/executions/{healed.pk}/rollback", {"reason": ""})

    assert response.status_code == 400 and "reason" in response.json()["error"]["fields"]
    healed.refresh_from_db()
    assert healed.state == "succeeded"


def test_an_approver_without_the_supervisors_permission_cannot_roll_back(bob, healed):
    client = csrf_client(bob)
    assert "Roll back…" not in client.get("/console/panels").content.decode()

    response = post(client, f"/console/executions/{healed.pk}/rollback", {"reason": "x"})

    assert response.status_code == 403
    healed.refresh_from_db()
    assert healed.state == "succeeded"


# --- Override a waiting ticket --------------------------------------------------------------


@pytest.fixture
def waiting(agent) -> ApprovalRequest:
    """A memory problem waiting for approval of its restart, and a second memory runbook."""
    [result] = agent.post_metrics(agent.sample("memory")).json()["results"]
    request = ApprovalRequest.objects.get(ticket__ticket_id=result["ticket_id"], status="pending")
    # drop-page-cache enabled but refused by the memory policy (no rollback plan), and a
    # gentler restart with one.
    runbook = Runbook.objects.get(name="drop-page-cache")
    runbook.enabled = True
    save_runbook(runbook, actor=None, reason="offered as an alternative", now=timezone.now())
    gentle = Runbook.objects.get(name="restart-leaking-service")
    gentle.pk, gentle.name, gentle.title = None, "restart-gently", "Restart, draining first"
    save_runbook(gentle, actor=None, reason="an alternative", now=timezone.now())
    return request


def test_the_override_offers_only_enabled_runbooks_of_the_tickets_category(alice, waiting):
    panels = csrf_client(alice).get("/console/panels").content.decode()

    offered = {
        name
        for name in Runbook.objects.values_list("name", flat=True)
        if f'value="runbook:{name}"' in panels
    }
    # not the one waiting already, nor one the policy would refuse, nor another category's
    assert offered == {"restart-gently"}


def test_a_supervisor_runs_another_runbook_and_the_ticket_leaves_the_queue(agent, alice, waiting):
    client = csrf_client(alice)
    before = last_sequence()

    with agent.capture(execute=True):
        response = post(
            client,
            f"/console/tickets/{waiting.ticket.ticket_id}/override",
            {
                "decide": "runbook",
                "runbook": "restart-gently",
                "reason": "a restart drops sessions",
            },
        )

    assert response.status_code == 200, response.content
    waiting.refresh_from_db()
    assert waiting.status == "voided" and "a restart drops sessions" in waiting.void_reason
    execution = Execution.objects.get(ticket=waiting.ticket)
    assert execution.runbook.name == "restart-gently" and execution.requested_by == alice
    actions = actions_since(before)
    assert ("approval.voided", "user:alice") in actions
    assert ("ticket.overridden", "user:alice") in actions
    assert ("execution.queued", "user:alice") in actions
    # the agent is handed the runbook chosen instead
    [action] = agent.take_actions()
    assert action["argv"] == execution.argv
    panels = client.get("/console/panels").content.decode()
    assert f'data-approval="{waiting.pk}"' not in panels


def test_an_override_to_a_runbook_not_offered_is_a_400_naming_it(alice, waiting):
    response = post(
        csrf_client(alice),
        f"/console/tickets/{waiting.ticket.ticket_id}/override",
        {"decide": "runbook", "runbook": "apply-firewall-change", "reason": "why not"},
    )

    assert response.status_code == 400 and "runbook" in response.json()["error"]["fields"]
    waiting.refresh_from_db()
    assert waiting.status == "pending"


def test_a_supervisor_closes_a_waiting_ticket_by_hand_as_the_admin_would(alice, waiting):
    before = last_sequence()

    response = post(
        csrf_client(alice),
        f"/console/tickets/{waiting.ticket.ticket_id}/override",
        {"decide": "resolve", "reason": "restarted it by hand"},
    )

    assert response.status_code == 200, response.content
    ticket = Ticket.objects.get(pk=waiting.ticket_id)
    assert ticket.status == "resolved" and ticket.resolution == "restarted it by hand"
    assert actions_since(before) == [
        ("approval.voided", "user:alice"),
        ("ticket.resolved", "user:alice"),
    ]


def test_an_approver_may_not_override_a_ticket(bob, waiting):
    client = csrf_client(bob)
    assert "Decide differently…" not in client.get("/console/panels").content.decode()

    for data in (
        {"decide": "runbook", "runbook": "restart-gently", "reason": "x"},
        {"decide": "close", "reason": "x"},
    ):
        response = post(client, f"/console/tickets/{waiting.ticket.ticket_id}/override", data)
        assert response.status_code == 403
    waiting.refresh_from_db()
    assert waiting.status == "pending"


# --- The approval dialog's reasons ---------------------------------------------------------


def test_why_a_person_is_asked_does_not_repeat_what_the_model_says(alice, agent):
    [result] = agent.post_metrics(agent.sample("firewall")).json()["results"]
    request = ApprovalRequest.objects.get(ticket__ticket_id=result["ticket_id"])
    model_says = request.decision.model_statement()

    reasons = policy_reasons(request.decision.reasons, model_says)

    assert reasons and model_says not in reasons
    assert request.decision.reasons[0] not in reasons  # the engine's first line is the model's
    panels = csrf_client(alice).get("/console/panels").content.decode()
    policy_part = panels.split('data-testid="policy-reasons"')[1].split("</div>")[0]
    assert "The model picks" not in policy_part
    assert "firewall" in policy_part.lower()


def test_the_admin_runs_another_runbook_through_the_same_action(agent, alice, bob, waiting):
    ticket = waiting.ticket
    url = f"/admin/remediation/ticket/{ticket.pk}/run-another-runbook/"
    client = Client()
    client.force_login(bob)
    assert client.get(url).status_code == 403  # an approver is not a supervisor
    client.force_login(alice)
    page = client.get(url).content.decode()
    assert "restart-gently" in page and "drop-page-cache" not in page
    before = last_sequence()

    with agent.capture(execute=True):
        response = client.post(url, {"runbook": "restart-gently", "reason": "drains first"})

    assert response.status_code == 302
    assert Execution.objects.get(ticket=ticket).runbook.name == "restart-gently"
    actions = actions_since(before)
    assert ("approval.voided", "user:alice") in actions
    assert ("ticket.overridden", "user:alice") in actions


def test_the_policys_reasons_leave_out_only_the_models_line():
    model = "The model picks AUTO_HEAL (probabilities: ...)."
    reasons = [model, "Reliability 52.0 is below the policy minimum 60.0.", "Decision: a person."]

    assert policy_reasons(reasons, model) == reasons[1:]
    # a stored line that differs from today's wording of the model is still the first line
    assert policy_reasons(["The model said so.", *reasons[1:]], model) == reasons[1:]


def test_a_ticket_escalated_to_people_is_decided_from_the_tickets_panel(agent, alice, bob, waiting):
    from governance.approvals.actions import reject_request

    reject_request(waiting, actor=bob, reason="not now", now=timezone.now())
    client = csrf_client(alice)
    ticket = Ticket.objects.get(pk=waiting.ticket_id)
    assert ticket.status == "escalated"
    panels = client.get("/console/panels").content.decode()
    tickets_panel = panels.split('id="tickets"')[1]
    assert f"/console/tickets/{ticket.ticket_id}/override" in tickets_panel
    assert 'value="runbook:restart-leaking-service"' in tickets_panel  # nothing waits now

    response = post(
        client,
        f"/console/tickets/{ticket.ticket_id}/override",
        {"decide": "close", "reason": "will replace the host"},
    )

    assert response.status_code == 200
    ticket.refresh_from_db()
    assert ticket.status == "closed"
    # and a closed ticket is no longer waiting: a second decision is refused with why
    again = post(
        client,
        f"/console/tickets/{ticket.ticket_id}/override",
        {"decide": "runbook", "runbook": "restart-gently", "reason": "x"},
    )
    assert again.status_code == 409 and "not waiting" in again.json()["error"]["message"]
    assert not Execution.objects.filter(ticket=ticket).exists()
