"""Policy simulation: replay the period's tickets through a draft before anyone enables it.

History is built through the API (two hosts with a full disk: the first heals by
itself, the second is held back by the blast-radius limit and goes to a person),
then a draft of the disk policy is replayed over it.
"""

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from governance.decisions.simulation import AUTO_HEALED, TO_A_PERSON, ReplayTicket, replay
from governance.models import AuditEvent, Decision, Policy
from governance.rules.defaults import default_policy, model_fields, snapshot
from governance.rules.facts import ModelOutput, RunbookFacts, Statistics, TicketFacts
from remediation.models import Execution, Ticket
from tests.conftest import TRUSTING

# Execution mechanics: self-healing trusts from the first ticket (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("trusting_policies")

ROWS = ("auto-healed", "sent to a person", "blocked", "recorded only")
CHANGELIST = "/admin/governance/policy/"


def draft_of_disk_policy(**changes) -> Policy:
    """A disabled copy of the disk policy in force (trusting) with `changes`: a draft."""
    fields = {
        **model_fields(default_policy("disk")),
        **TRUSTING,
        "name": "disk-draft",
        "enabled": False,
    }
    policy = Policy(**{**fields, **changes})
    policy.full_clean()
    policy.save()
    return policy


def simulate(name: str, *args: str) -> str:
    out = StringIO()
    call_command("simulate_policy", name, *args, stdout=out)
    return out.getvalue()


def table(output: str) -> dict[str, tuple[int, int]]:
    """The report's rows: outcome -> (draft, actual)."""
    rows = {}
    for line in output.splitlines():
        for label in ROWS:
            if line.startswith(label):
                draft, actual = line[len(label) :].split()
                rows[label] = (int(draft), int(actual))
    return rows


def held_hosts(output: str) -> str:
    [line] = [line for line in output.splitlines() if line.startswith("Hosts the blast-radius")]
    return line.split(": ", 1)[1]


NOON = datetime(2025, 3, 12, 12, 0, tzinfo=UTC)
CLEAN_TEMP = RunbookFacts(
    name="clean-temp-and-rotate-logs",
    action_type="safe_write",
    system="linux",
    reversible=True,
    has_rollback_plan=True,
    commands=("logrotate --force /etc/logrotate.conf",),
)


def replayed(ticket_id: str, host: str, at: datetime, **labels: str) -> ReplayTicket:
    """A confident disk problem that actually healed itself."""
    return ReplayTicket(
        ticket_id=ticket_id,
        opened_at=at,
        facts=TicketFacts(ticket_id, "disk", host, labels, True, 1),
        model=ModelOutput(severity=1, confidence=0.95),
        runbook=CLEAN_TEMP,
        stats=Statistics(),
        actual=AUTO_HEALED,
    )


@pytest.fixture
def disk_history(agent, other_agent) -> list[str]:
    """Two full disks a second apart: web-01 heals itself, web-02 waits for a person."""
    [first] = agent.post_metrics(agent.sample("disk")).json()["results"]
    [second] = other_agent.post_metrics(other_agent.sample("disk")).json()["results"]
    assert (first["decision"], second["decision"]) == ("AUTO_HEAL", "HITL_REQUIRED")
    [held] = Decision.objects.filter(ticket__ticket_id=second["ticket_id"])
    assert held.safety_checks["blast_radius_ok"] is False
    return [first["ticket_id"], second["ticket_id"]]


def test_replaying_the_policy_in_force_gives_what_actually_happened(disk_history, agent):
    # given a CPU ticket too, which the disk policy does not cover
    agent.post_metrics(agent.sample("cpu"))

    # when
    output = simulate("disk-self-healing")

    # then
    assert "2 tickets of category disk" in output
    assert table(output) == {
        "auto-healed": (1, 1),
        "sent to a person": (1, 1),
        "blocked": (0, 0),
        "recorded only": (0, 0),
    }
    assert held_hosts(output) == "web-02"


def test_a_looser_blast_radius_would_have_healed_both_hosts(disk_history):
    # given a draft that lets every host be remediated at once
    draft_of_disk_policy(blast_radius_max_percent=100.0)

    # when
    output = simulate("disk-draft")

    # then the second host would have healed too, and nothing would have been held
    rows = table(output)
    assert rows["auto-healed"] == (2, 1)
    assert rows["sent to a person"] == (0, 1)
    assert held_hosts(output) == "none"
    assert f"{disk_history[1]}: sent to a person -> auto-healed" in output


def test_a_stricter_autonomy_level_sends_every_ticket_to_a_person(disk_history):
    # given a draft at L1: a person approves every action
    draft_of_disk_policy(autonomy_level=1)

    # when
    rows = table(simulate("disk-draft"))

    # then
    assert rows["auto-healed"] == (0, 1)
    assert rows["sent to a person"] == (2, 1)


def test_a_draft_that_forbids_the_runbooks_command_blocks_it(disk_history):
    # given a draft that forbids the disk runbook's own command
    draft_of_disk_policy(forbidden_commands=["delete", "disk-quarantine"])

    # when
    rows = table(simulate("disk-draft"))

    # then no runbook may run: people handle both tickets by hand
    assert rows["blocked"] == (2, 0)
    assert rows["auto-healed"] == (0, 1)


def test_a_zero_host_blast_radius_names_every_host_it_would_hold(disk_history):
    # given a draft that allows no host under remediation at all
    draft_of_disk_policy(blast_radius_max_hosts=0)

    # when
    output = simulate("disk-draft")

    # then
    assert held_hosts(output) == "web-01, web-02"
    assert table(output)["auto-healed"] == (0, 1)


def test_only_the_asked_period_is_replayed(disk_history):
    # given the first ticket opened 40 days ago
    old = Ticket.objects.get(ticket_id=disk_history[0])
    Ticket.objects.filter(pk=old.pk).update(opened_at=old.opened_at - timedelta(days=40))

    # when / then
    assert "1 tickets of category disk" in simulate("disk-self-healing", "--days", "30")
    assert "2 tickets of category disk" in simulate("disk-self-healing", "--days", "60")


def test_the_blast_radius_counts_what_the_draft_would_have_healed_not_what_was(disk_history):
    # given a draft that would not have healed web-01 (it only allows windows) and
    # allows one host at a time; in reality web-01 was being healed when web-02 broke
    draft_of_disk_policy(allowed_systems=["windows"], blast_radius_max_hosts=1)

    # when
    output = simulate("disk-draft")

    # then under the draft nothing held web-01, so the limit holds nobody
    assert held_hosts(output) == "none"
    assert table(output)["blocked"] == (2, 0)


def test_simulating_changes_nothing(disk_history):
    # given
    draft = draft_of_disk_policy(autonomy_level=1)
    before = (Decision.objects.count(), Execution.objects.count(), AuditEvent.objects.count())

    # when
    simulate("disk-draft")

    # then
    after = (Decision.objects.count(), Execution.objects.count(), AuditEvent.objects.count())
    assert after == before
    draft.refresh_from_db()
    assert draft.enabled is False
    assert draft.history.count() == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no-such-policy"], "no policy named 'no-such-policy' (policies: "),
        (["disk-self-healing", "--days", "0"], "--days must be between 1 and 3650, not 0"),
        (["disk-self-healing", "--days", "-3"], "--days must be between 1 and 3650, not -3"),
        (["disk-self-healing", "--days", "99999"], "--days must be between 1 and 3650"),
        (["disk-self-healing", "--days", "a week"], "invalid int value: 'a week'"),
    ],
)
def test_bad_arguments_fail_with_one_readable_line(db, args, message):
    # when
    with pytest.raises(CommandError) as failure:
        simulate(*args)

    # then manage.py prints it as one line and exits with its non-zero return code
    text = str(failure.value)
    assert message in text
    assert "\n" not in text
    assert failure.value.returncode != 0


def test_a_supervisor_simulates_a_draft_from_the_policy_admin(disk_history, alice):
    # given
    draft = draft_of_disk_policy(blast_radius_max_percent=100.0)
    browser = Client()
    browser.force_login(alice)

    # when
    page = browser.post(
        CHANGELIST,
        {"action": "simulate_last_30_days", "_selected_action": [draft.pk]},
        follow=True,
    )

    # then
    assert page.status_code == 200
    [message] = [str(m) for m in page.context["messages"]]
    assert message.startswith(f"disk-draft (version {draft.history.get().history_id}), 2 tickets:")
    assert "auto-healed: 2 (actually 1)" in message
    assert "sent to a person: 0 (actually 1)" in message
    assert "blocked: 0 (actually 0)" in message
    assert message.endswith("blast radius would hold: none")


def test_the_admin_simulation_names_the_hosts_the_blast_radius_holds(disk_history, alice):
    # given
    browser = Client()
    browser.force_login(alice)
    policy = Policy.objects.get(name="disk-self-healing")

    # when
    page = browser.post(
        CHANGELIST,
        {"action": "simulate_last_30_days", "_selected_action": [policy.pk]},
        follow=True,
    )

    # then
    [message] = [str(m) for m in page.context["messages"]]
    assert "auto-healed: 1 (actually 1)" in message
    assert message.endswith("blast radius would hold: web-02")


def test_a_replayed_rate_limit_counts_actions_taken_at_the_same_instant():
    # given a draft allowing one action an hour, and two hosts breaking at the same second
    draft = replace(snapshot({**default_policy("disk"), **TRUSTING}), max_actions_per_hour=1)
    tickets = [replayed("INC-1", "web-01", NOON), replayed("INC-2", "web-02", NOON)]

    # when
    report = replay(draft, tickets, fleet_size=10)

    # then the second waits for a person, as it would have in production
    assert report.draft == {AUTO_HEALED: 1, TO_A_PERSON: 1}
    assert report.changed == (("INC-2", AUTO_HEALED, TO_A_PERSON),)


def test_a_replayed_rate_limit_forgets_actions_older_than_an_hour():
    # given
    draft = replace(snapshot({**default_policy("disk"), **TRUSTING}), max_actions_per_hour=1)
    tickets = [
        replayed("INC-1", "web-01", NOON),
        replayed("INC-2", "web-02", NOON + timedelta(minutes=61)),
    ]

    # when / then
    assert replay(draft, tickets, fleet_size=10).draft == {AUTO_HEALED: 2}


def test_a_labelled_blast_radius_ignores_hosts_outside_its_label():
    # given a draft allowing one production host at a time; a test host heals first
    draft = replace(
        snapshot({**default_policy("disk"), **TRUSTING}),
        blast_radius_label="env=prod",
        blast_radius_max_hosts=1,
        blast_radius_max_percent=None,
    )
    tickets = [
        replayed("INC-1", "test-01", NOON, env="test"),
        replayed("INC-2", "prod-01", NOON + timedelta(seconds=1), env="prod"),
        replayed("INC-3", "prod-02", NOON + timedelta(seconds=2), env="prod"),
    ]

    # when
    report = replay(draft, tickets, fleet_size=2)

    # then the test host does not count; the second production host is held
    assert report.held_by_blast_radius == ("prod-02",)
    assert report.draft == {AUTO_HEALED: 2, TO_A_PERSON: 1}


def test_a_host_is_held_only_while_a_simulated_action_runs_on_another():
    # given one host at a time; the second host breaks after the first action is over
    draft = replace(
        snapshot({**default_policy("disk"), **TRUSTING}),
        blast_radius_max_hosts=1,
        blast_radius_max_percent=None,
    )
    tickets = [
        replayed("INC-1", "web-01", NOON),
        replayed("INC-2", "web-02", NOON + timedelta(minutes=5)),
        replayed("INC-3", "web-03", NOON + timedelta(minutes=30)),
    ]

    # when
    report = replay(draft, tickets, fleet_size=3)

    # then
    assert report.held_by_blast_radius == ("web-02",)
    assert report.draft == {AUTO_HEALED: 2, TO_A_PERSON: 1}
