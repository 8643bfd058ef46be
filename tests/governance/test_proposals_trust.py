"""Promotion proposals show who stands behind their numbers, and one computed on another
version of its policy (even one raised and lowered back by hand) is not accepted (issue 20)."""

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone

from governance.models import AuditEvent, AutonomyProposal, ProposalStatus
from governance.promotions.proposals import propose_promotions
from tests.conftest import make_user
from tests.governance.admin_pages import logged_in
from tests.governance.test_autonomy import PROPOSALS, disk_policy, feedback, heal, set_policy

# Execution mechanics: self-healing trusts from the first ticket (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("trusting_policies")


@pytest.fixture
def few_fixes(settings):
    settings.WARDEN_PROMOTION_MIN_FIXES = 3
    settings.WARDEN_PROMOTION_MIN_RELIABILITY = 0.0


@pytest.fixture
def integrator(db) -> User:
    service = User.objects.create_user("ticketing-bridge")
    service.groups.add(Group.objects.get(name="integrators"))
    return service


def page_of(user: User, proposal: AutonomyProposal) -> str:
    page = logged_in(user).get(f"{PROPOSALS}{proposal.pk}/change/")
    assert page.status_code == 200
    return page.content.decode()


def accept_in_the_admin(user: User, proposal: AutonomyProposal) -> str:
    page = logged_in(user).post(
        PROPOSALS,
        {"action": "accept_action", "_selected_action": [proposal.pk], "confirmed": "yes"},
        follow=True,
    )
    return page.content.decode()


def test_a_proposal_resting_on_one_persons_feedback_says_so_on_its_page(agent, alice, few_fixes):
    set_policy(alice, autonomy_level=2, reason="start at L2")
    for _ in range(3):
        feedback(heal(agent), alice)

    assert propose_promotions(timezone.now()) == 1
    proposal = AutonomyProposal.objects.get()

    # its numbers name who stands behind them, and how the fixes were verified
    backing = proposal.backing
    assert backing["accounts"] == [
        {"username": "alice", "service": False, "feedback": 3, "positive": 3, "approvals": 0}
    ]
    assert (backing["people"], backing["services"]) == (1, 0)
    assert backing["verified"] == {"readings": 3, "alert": 0, "other": 0}
    proposed = AuditEvent.objects.get(action="autonomy.proposed")
    assert proposed.data["backing"]["people"] == 1
    # and its page says plainly that one person is not enough
    text = page_of(alice, proposal)
    assert "Its positive feedback comes from 1 person (alice); at least 2 distinct people" in text
    assert "3 by the host&#x27;s own readings, 0 by an alert&#x27;s resolution" in text


def test_a_policy_edited_since_makes_its_proposal_anew(agent, alice, few_fixes):
    set_policy(alice, autonomy_level=2, reason="start at L2")
    for _ in range(3):
        feedback(heal(agent), alice)
    propose_promotions(timezone.now())
    first = AutonomyProposal.objects.get()

    set_policy(alice, description="cleans /var/tmp", reason="say what it does")
    assert propose_promotions(timezone.now()) == 1

    first.refresh_from_db()
    assert first.status == ProposalStatus.SUPERSEDED
    assert "was edited since the proposal was computed" in first.note
    fresh = AutonomyProposal.objects.get(status=ProposalStatus.PROPOSED)
    assert fresh.target_version == disk_policy().history.latest().history_id


def test_two_people_behind_a_proposal_leave_nothing_to_caution(agent, alice, few_fixes):
    erin = make_user("erin", "supervisors")
    set_policy(alice, autonomy_level=2, reason="start at L2")
    for n in range(3):
        feedback(heal(agent), alice if n % 2 else erin)

    propose_promotions(timezone.now())
    proposal = AutonomyProposal.objects.get()

    assert proposal.backing["warnings"] == []
    assert "Nothing: its feedback comes from enough people" in page_of(alice, proposal)


def test_an_integrators_feedback_alone_earns_no_proposal(agent, alice, integrator, few_fixes):
    # given fixes liked only by an integrator's token (the finding's "100% positive feedback")
    set_policy(alice, autonomy_level=2, reason="start at L2")
    for _ in range(3):
        feedback(heal(agent), integrator)

    # then by default a service's feedback earns nothing: no feedback, no proposal
    assert propose_promotions(timezone.now()) == 0

    # and where the policy weighs it, the proposal says nobody but a service liked it
    set_policy(alice, service_feedback_weight=1.0, reason="the bridge relays people")
    for _ in range(3):
        feedback(heal(agent), integrator)
    assert propose_promotions(timezone.now()) == 1
    proposal = AutonomyProposal.objects.get()
    assert proposal.backing["accounts"][0]["service"] is True
    text = page_of(alice, proposal)
    assert "comes only from service accounts (ticketing-bridge)" in text
    assert "service account" in text


def test_a_proposal_is_refused_after_its_policy_was_raised_and_lowered_back_by_hand(
    agent, alice, few_fixes
):
    set_policy(alice, autonomy_level=2, reason="start at L2")
    for _ in range(3):
        feedback(heal(agent), alice)
    propose_promotions(timezone.now())
    proposal = AutonomyProposal.objects.get()

    # when someone raises the policy by hand and lowers it back: it looks as it did
    set_policy(alice, autonomy_level=3, reason="try L3")
    set_policy(alice, autonomy_level=2, reason="back to L2")

    # then accepting the old proposal in the admin is refused, saying why, and changes nothing
    text = accept_in_the_admin(alice, proposal)
    assert "was changed since proposal #" in text and "nothing changed" in text
    assert disk_policy().autonomy_level == 2
    proposal.refresh_from_db()
    assert proposal.status == ProposalStatus.PROPOSED
    assert not AuditEvent.objects.filter(action="policy.promoted").exists()

    # and the next run supersedes it; a proposal computed on today's version can be accepted
    propose_promotions(timezone.now())
    proposal.refresh_from_db()
    assert proposal.status == ProposalStatus.SUPERSEDED
    for _ in range(3):
        feedback(heal(agent), alice)  # the record restarted when the level was set again
    propose_promotions(timezone.now())
    fresh = AutonomyProposal.objects.get(status=ProposalStatus.PROPOSED)
    assert "Accepted: policy disk-self-healing moved L2 to L3." in accept_in_the_admin(alice, fresh)
    assert disk_policy().autonomy_level == 3
