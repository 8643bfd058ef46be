"""What runs is what was decided: the exact argv from decision to approval to the agent's
report, the agent's allow-list as a ceiling Warden knows of, and parameters by type."""

import json
import shlex
from pathlib import Path

import pytest

from governance.models import ApprovalRequest, AuditEvent, Decision
from remediation.models import Execution, Runbook, Ticket
from tests.conftest import Api
from warden_agent.argv import allowlist_digest, argv_digest

# Execution mechanics: self-healing trusts from the first ticket (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("trusting_policies")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_ALLOWLIST = json.loads((ROOT / "agent/examples/allowlist.json").read_text())


def report_allowlist(agent, entries: dict, digest: str | None = None):
    body = {
        "entries": entries,
        "digest": allowlist_digest(entries) if digest is None else digest,
        "agent_version": "1.0.0",
    }
    with agent.capture(execute=True):
        return agent.client.put(
            "/api/v1/agent/allowlist",
            data=json.dumps(body),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {agent.key}",
        )


def healed_disk(agent) -> dict:
    """A full disk healed by itself: the action the agent is sent."""
    [result] = agent.post_metrics(agent.sample("disk")).json()["results"]
    assert result["decision"] == "AUTO_HEAL"
    [action] = agent.take_actions()
    return action


def test_every_seeded_runbook_runs_what_the_agents_example_allow_list_allows(db):
    # the catalogue Warden decides from and the allow-list operators install are one
    for runbook in Runbook.objects.exclude(handoff_target__isnull=False):
        assert EXAMPLE_ALLOWLIST[runbook.action] == runbook.argv, runbook.name
        if runbook.rollback_action:
            assert EXAMPLE_ALLOWLIST[runbook.rollback_action] == runbook.rollback_argv


def test_the_agent_is_sent_the_exact_argv_decided_and_its_digest(agent):
    action = healed_disk(agent)

    execution = Execution.objects.get()
    decision = execution.decision
    assert action["argv"] == decision.argv == execution.argv == execution.runbook.argv
    assert action["argv"][:2] == ["warden-runbook", "disk-quarantine"]
    assert action["argv_digest"] == argv_digest(action["argv"]) == decision.argv_digest
    started = AuditEvent.objects.get(action="execution.started")
    assert started.data["argv"] == action["argv"]


def test_a_report_of_the_argv_sent_is_recorded_with_its_exit_code(agent):
    action = healed_disk(agent)

    response = agent.report(action, output="moved 3 files", exit_code=0)

    assert response.status_code == 200, response.content
    execution = Execution.objects.get()
    assert (execution.state, execution.exit_code) == ("verifying", 0)
    event = AuditEvent.objects.get(action="execution.verifying")
    assert event.data["argv"] == action["argv"] and event.data["exit_code"] == 0


def test_a_report_of_another_argv_is_refused_and_people_are_told(agent):
    # given an agent whose own file ran something else
    action = healed_disk(agent)
    other = ["/usr/local/sbin/clean-temp", "--everything"]

    # when it reports what it ran
    response = agent.report(action, argv=other)

    # then the report is refused, the execution ends and its ticket goes to people
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "argv_mismatch"
    execution = Execution.objects.get()
    assert execution.state == "cancelled"
    assert shlex.join(other) in execution.cancel_reason
    assert Ticket.objects.get().status == "escalated"
    refused = AuditEvent.objects.get(action="execution.report_refused")
    assert refused.data["reported_argv"] == other


def test_a_report_with_a_digest_that_is_not_its_argvs_is_refused(agent):
    action = healed_disk(agent)
    body = {
        "token": action["token"],
        "ok": True,
        "output": "",
        "argv": action["argv"],
        "argv_digest": "0" * 64,
        "exit_code": 0,
    }

    response = agent.post(f"/api/v1/agent/actions/{action['execution_id']}/result", body)

    assert response.status_code == 409
    assert Execution.objects.get().state == "cancelled"


def test_a_report_without_the_argv_is_refused_naming_the_field(agent):
    action = healed_disk(agent)
    body = {"token": action["token"], "ok": True, "output": "done"}

    response = agent.post(f"/api/v1/agent/actions/{action['execution_id']}/result", body)

    assert response.status_code == 400
    assert "argv" in response.json()["error"]["fields"]
    assert Execution.objects.get().state == "running"


def test_an_agent_that_refused_ran_nothing_so_nothing_is_rolled_back_or_counted(agent):
    action = healed_disk(agent)

    response = agent.report(action, ok=False, output="not allow-listed", argv=[])

    assert response.status_code == 200
    execution = Execution.objects.get()
    assert execution.state == "cancelled"
    assert "refused" in execution.cancel_reason
    assert not AuditEvent.objects.filter(action="execution.rollback_pending").exists()
    assert Ticket.objects.get().status == "escalated"


def test_the_agents_allow_list_is_kept_audited_and_read_back(agent, client, alice):
    response = report_allowlist(agent, EXAMPLE_ALLOWLIST)

    assert response.status_code == 200, response.content
    assert response.json()["digest"] == allowlist_digest(EXAMPLE_ALLOWLIST)
    with agent.capture(execute=True):
        read = agent.client.get("/api/v1/agent/allowlist", HTTP_AUTHORIZATION=f"Bearer {agent.key}")
    assert read.json()["entries"] == EXAMPLE_ALLOWLIST
    [event] = AuditEvent.objects.filter(action="host.allowlist_reported")
    assert f"allows {len(EXAMPLE_ALLOWLIST)} actions" in event.summary
    # the same list again is no news
    report_allowlist(agent, EXAMPLE_ALLOWLIST)
    assert AuditEvent.objects.filter(action="host.allowlist_reported").count() == 1
    # and the host's page shows it
    client.force_login(alice)
    page = client.get(f"/admin/remediation/host/{agent.host.pk}/change/").content.decode()
    assert "disk-quarantine" in page and allowlist_digest(EXAMPLE_ALLOWLIST) in page


@pytest.mark.parametrize(
    ("entries", "digest", "field"),
    [
        ({"clean": ["warden-runbook", "{x:colour}"]}, None, "entries.clean"),
        ({"clean": []}, None, "entries.clean"),
        ({"clean": ["{program:word}", "x"]}, None, "entries.clean"),
        ({"clean": ["warden-runbook"]}, "f" * 64, "digest"),
        # the agent's own rule for action names: one it would refuse to load is refused here
        ({"rm -rf": ["rm"]}, None, "entries.rm -rf"),
        ({"x" * 101: ["true"]}, None, "entries." + "x" * 101),
    ],
)
def test_a_bad_allow_list_is_refused_naming_what_is_wrong(agent, entries, digest, field):
    response = report_allowlist(agent, entries, digest)

    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    agent.host.refresh_from_db()
    assert agent.host.allowlist_digest == ""


def test_a_runbook_the_hosts_agent_would_refuse_is_flagged_when_decided(agent):
    # given an agent whose allow-list lacks the disk clean-up
    entries = {k: v for k, v in EXAMPLE_ALLOWLIST.items() if k != "clean_temp_and_rotate_logs"}
    report_allowlist(agent, entries)

    # when its disk fills
    [result] = agent.post_metrics(agent.sample("disk")).json()["results"]

    # then nothing is queued: a person handles it, told why before anyone approves
    assert result["decision"] != "AUTO_HEAL"
    assert not Execution.objects.exists()
    assert not ApprovalRequest.objects.filter(status="pending").exists()
    decision = Decision.objects.get()
    assert any("would refuse it" in line for line in decision.reasons), decision.reasons


def test_a_changed_template_on_the_host_is_flagged_too(agent):
    entries = dict(EXAMPLE_ALLOWLIST)
    entries["clean_temp_and_rotate_logs"] = [
        "warden-runbook",
        "disk-quarantine",
        "--temp-dir",
        "/tmp",
    ]
    report_allowlist(agent, entries)

    agent.post_metrics(agent.sample("disk"))

    assert not Execution.objects.exists()
    [decision] = Decision.objects.all()
    assert any("would refuse clean_temp_and_rotate_logs" in r for r in decision.reasons)


def test_an_allow_list_that_matches_lets_the_fix_heal_by_itself(agent):
    report_allowlist(agent, EXAMPLE_ALLOWLIST)

    assert healed_disk(agent)["action"] == "clean_temp_and_rotate_logs"


# --- Parameters -------------------------------------------------------------------------


@pytest.fixture
def web_host(agent):
    return agent.host


def open_security_ticket(api_client: Api, host: str, **parameters: str):
    return api_client.post(
        "/api/v1/tickets",
        {
            "ticket_id": "SEC-1",
            "host": host,
            "category": "security",
            "description": "brute force from one address",
            "parameters": parameters,
        },
    )


def test_a_parameter_of_its_type_fills_the_command_people_approve(api, alice, bob, web_host):
    response = open_security_ticket(api(alice), web_host.name, address="203.0.113.7")

    assert response.status_code == 202, response.content
    decision = Decision.objects.get()
    assert decision.argv == [
        "warden-runbook",
        "nft-block",
        "--address",
        "203.0.113.7",
        "--timeout",
        "1h",
    ]
    assert decision.rollback_argv[-1] == "203.0.113.7"
    request = ApprovalRequest.objects.get()
    assert request.argv_digest == argv_digest(decision.argv)
    ticket = api(alice).get("/api/v1/tickets/SEC-1").json()
    assert ticket["suggested_actions"][0]["argv"] == decision.argv


@pytest.mark.parametrize("address", ["-rf", "203.0.113.7; reboot", "example.com", ""])
def test_a_parameter_not_of_its_type_stops_the_runbook_at_decision(api, alice, web_host, address):
    response = open_security_ticket(api(alice), web_host.name, address=address)

    if response.status_code == 400:  # empty: refused with the field named
        assert "parameters.address" in response.json()["error"]["fields"]
        return
    assert response.status_code == 202
    decision = Decision.objects.get()
    assert decision.argv == []
    assert any("address" in line and "cannot be run" in line for line in decision.reasons)
    assert not ApprovalRequest.objects.filter(status="pending").exists()


def test_a_missing_parameter_is_named(api, alice, web_host):
    open_security_ticket(api(alice), web_host.name)

    decision = Decision.objects.get()
    assert any("address" in line for line in decision.reasons), decision.reasons


def test_a_success_that_ran_nothing_is_refused(agent):
    action = healed_disk(agent)

    response = agent.report(action, ok=True, argv=[])

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "argv_mismatch"
    assert Execution.objects.get().state == "cancelled"


def test_a_rollback_reported_as_another_argv_fails_and_people_are_told(agent):
    # given a fix that failed, its rollback sent to the agent
    action = healed_disk(agent)
    agent.report(action, ok=False, output="no space to move to")
    [rollback] = agent.take_actions()
    assert rollback["kind"] == "rollback"

    # when the agent says it ran something else to undo it
    response = agent.report(rollback, argv=["/bin/true"])

    # then the report is refused, the rollback is failed on the record and a person checks
    assert response.status_code == 409
    execution = Execution.objects.get()
    assert execution.state == "rollback_failed"
    failed = AuditEvent.objects.get(action="execution.rollback_failed")
    assert "/bin/true" in failed.summary and "not the decided" in failed.summary
    assert Ticket.objects.get().status == "partially_remediated"
