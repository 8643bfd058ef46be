"""Policies are versioned, and each decision records the version that decided it."""

import pytest

from governance.audit.log import GENESIS_HASH, verify_chain
from governance.models import AuditEvent, Decision, Policy
from tests.governance.admin_pages import form_data, logged_in

# Execution mechanics: self-healing trusts from the first ticket (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("trusting_policies")

DISK = "disk-self-healing"


def edit_in_admin(user, policy: Policy, **changes) -> None:
    browser = logged_in(user)
    url = f"/admin/governance/policy/{policy.pk}/change/"
    page = browser.get(url)
    response = browser.post(
        url, {**form_data(page, change_reason="tuning", **changes), "_save": "Save"}
    )
    assert response.status_code == 302, response.context["adminform"].form.errors


def decision_for(result: dict) -> Decision:
    return Decision.objects.get(ticket__ticket_id=result["ticket_id"])


def test_every_policy_starts_with_a_version(db):
    # the seeded defaults, written by a migration, have a first version too
    for policy in Policy.objects.all():
        assert policy.history.filter(history_type="+").count() == 1, policy.name


def test_a_decision_records_the_version_of_the_policy_it_used(agent):
    # when
    [result] = agent.post_metrics(agent.sample("disk")).json()["results"]

    # then
    decision = decision_for(result)
    # the version in force: seeded, raised to the seed's numbers, then set trusting
    first = Policy.objects.get(name=DISK).history.latest()
    assert decision.policy.name == DISK
    assert decision.policy_version == first.history_id
    assert f"Policy {DISK} (version {first.history_id}) applies" in " ".join(decision.reasons)


def test_editing_a_policy_in_the_admin_makes_a_new_version_for_later_decisions(
    agent, other_agent, alice
):
    # given a decision made under the seeded disk policy
    policy = Policy.objects.get(name=DISK)
    versions = policy.history.count()
    [before] = agent.post_metrics(agent.sample("disk")).json()["results"]
    old_version = decision_for(before).policy_version

    # when a supervisor lowers the policy to L1 in the admin
    edit_in_admin(alice, policy, autonomy_level=1)

    # then the edit is a new version, attributed to her
    latest = policy.history.latest()
    assert policy.history.count() == versions + 1
    assert latest.history_id != old_version
    assert (latest.history_type, latest.history_user, latest.autonomy_level) == ("~", alice, 1)

    # and a later decision records and follows it, while the earlier one keeps its own
    [after] = other_agent.post_metrics(other_agent.sample("disk")).json()["results"]
    assert after["decision"] == "HITL_REQUIRED"
    assert decision_for(after).policy_version == latest.history_id
    assert f"(version {latest.history_id}) applies at L1" in " ".join(decision_for(after).reasons)
    assert decision_for(before).policy_version == old_version


def test_the_recorded_version_shows_the_policy_as_it_was_when_it_decided(agent, alice):
    # given a decision, then an edit of the thresholds it used
    policy = Policy.objects.get(name=DISK)
    [result] = agent.post_metrics(agent.sample("disk")).json()["results"]
    edit_in_admin(alice, policy, min_confidence_score=0.99, max_actions_per_hour=3)

    # when compliance looks the decision's version up
    as_decided = Policy.history.get(history_id=decision_for(result).policy_version)

    # then it has the values the decision used, not today's
    assert (as_decided.min_confidence_score, as_decided.max_actions_per_hour) == (0.8, 10)
    policy.refresh_from_db()
    assert (policy.min_confidence_score, policy.max_actions_per_hour) == (0.99, 3)


def test_the_decision_list_in_the_admin_shows_the_policy_version(agent, alice):
    # given
    [result] = agent.post_metrics(agent.sample("disk")).json()["results"]
    version = decision_for(result).policy_version

    # when
    page = logged_in(alice).get("/admin/governance/decision/")

    # then
    assert page.status_code == 200
    assert b"Policy version" in page.content
    assert f'<td class="field-policy_version">{version}</td>'.encode() in page.content


def test_an_admin_edit_is_audited_with_its_version_and_what_changed(alice):
    # given
    policy = Policy.objects.get(name=DISK)

    # when
    edit_in_admin(alice, policy, autonomy_level=2, max_actions_per_hour=4)

    # then
    version = policy.history.latest().history_id
    # the newest: the trusting fixture changed the self-healing policies before the test
    changed = AuditEvent.objects.filter(action="policy.changed").order_by("-sequence").first()
    assert changed.actor == "user:alice"
    assert changed.summary == (
        f"policy {DISK} changed: autonomy_level, max_actions_per_hour (version {version}): tuning"
    )
    assert changed.data["version"] == version
    assert changed.data["changed"] == ["autonomy_level", "max_actions_per_hour"]
    assert changed.data["reason"] == "tuning"
    assert changed.data["values"]["autonomy_level"]["to"] == 2
    assert verify_chain(AuditEvent.objects.order_by("sequence"), GENESIS_HASH).intact
