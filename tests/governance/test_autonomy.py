"""Autonomy that is earned and lost: proposals one step up with their numbers, accepted in
one click; demotion to L1 at once after failed fixes or poor feedback, audited and told;
a shadow policy enforces only once people's verdicts agree with it (or an override)."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils import timezone
from django_q.models import Schedule
from hypothesis import given
from hypothesis import strategies as st

from feedback.actions import give_feedback
from feedback.models import Feedback
from governance.approvals.actions import approve_request
from governance.models import (
    ApprovalRequest,
    AuditEvent,
    AutonomyProposal,
    Notice,
    NoticeKind,
    PatternAutonomy,
    Policy,
    ProposalStatus,
)
from governance.policies.actions import save_policy
from governance.promotions.actions import ProposalError, accept_proposal, dismiss_proposal
from governance.promotions.proposals import propose_promotions
from governance.rules.autonomy import (
    Agreement,
    FeedbackShare,
    Outcome,
    Rung,
    ShadowDecision,
    Thresholds,
    TrackRecord,
    Verdict,
    demotion_for,
    enforce_refusal,
    next_step,
    promotion_for,
    shadow_agreement,
    verdict_agrees,
)
from governance.tasks import propose_autonomy_promotions
from remediation.actions import add_host, close_ticket, roll_back_execution
from remediation.choices import ExecutionState
from remediation.models import Execution, Ticket
from tests.conftest import AgentClient
from tests.governance.admin_pages import form_data, logged_in

# Execution mechanics: self-healing trusts from the first ticket (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("trusting_policies")

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
SEED = Thresholds()  # the seed's numbers, the settings' defaults
PROPOSALS = "/admin/governance/autonomyproposal/"


# --- The rules, as plain functions -----------------------------------------------------


def record(fixes=24, succeeded=23, feedback=10, positive=10, reliability=91.0, since=T0):
    return TrackRecord(since, fixes, succeeded, feedback, positive, reliability)


def test_the_seed_progression_earns_one_step_with_its_numbers():
    proposal = promotion_for(record(), SEED, Rung(2, requires_approval=True))

    assert proposal is not None
    assert (proposal.change, proposal.proposed) == ("raise_level", Rung(3, True))
    assert proposal.numbers["fixes"] == 24 and proposal.numbers["succeeded"] == 23
    assert proposal.numbers["thresholds"]["min_fixes"] == 20
    assert proposal.summary.startswith(
        "L2 to L3: since 2026-03-02 12:00 UTC, 24 fixes, 23 verified (96%); "
        "10 of 10 feedback positive (100%); mean reliability 91.0"
    )


@pytest.mark.parametrize(
    ("current", "step"),
    [
        (Rung(1, True), ("raise_level", Rung(2, True))),
        (Rung(2, False), ("raise_level", Rung(3, False))),
        (Rung(3, True), ("drop_approval", Rung(3, False))),
        (Rung(3, False), None),  # the top
        (Rung(0, True), None),  # manual is people's choice
    ],
)
def test_the_ladder_goes_one_step_at_a_time(current, step):
    assert next_step(current) == step


def test_a_pattern_ladder_ends_at_l3():
    assert next_step(Rung(3), approval_step=False) is None


@pytest.mark.parametrize(
    "short",
    [
        {"fixes": 19, "succeeded": 19},  # the first 20 are people's
        {"fixes": 20, "succeeded": 17},  # 85% verified
        {"feedback": 0, "positive": 0},  # nobody said it was good
        {"feedback": 10, "positive": 8},  # 80% positive
        {"reliability": 89.9},  # not very high confidence
        {"reliability": None},
        {"reliability": float("nan")},
    ],
)
def test_a_record_short_of_any_threshold_earns_nothing(short):
    assert promotion_for(record(**short), SEED, Rung(1)) is None


records = st.builds(
    lambda fixes, failed, feedback, negative, reliability: TrackRecord(
        T0, fixes, max(fixes - failed, 0), feedback, max(feedback - negative, 0), reliability
    ),
    st.integers(0, 60),
    st.integers(0, 60),
    st.integers(0, 30),
    st.integers(0, 30),
    st.one_of(st.none(), st.floats(0, 100), st.just(float("nan"))),
)
rungs = st.builds(Rung, st.integers(0, 3), st.booleans())


@given(records, rungs)
def test_a_proposal_is_always_one_step_from_l1_or_above_and_earned(track, rung):
    proposal = promotion_for(track, SEED, rung)
    if proposal is None:
        return
    assert rung.level >= 1 and proposal.current == rung
    assert (proposal.change, proposal.proposed) == next_step(rung)
    assert track.fixes >= 20 and track.succeeded / track.fixes >= 0.9
    assert track.positive / track.feedback >= 0.85 and track.reliability >= 90


@given(records, rungs, st.integers(0, 10))
def test_more_verified_fixes_never_lose_a_proposal(track, rung, more):
    better = TrackRecord(
        track.since,
        track.fixes + more,
        track.succeeded + more,
        track.feedback,
        track.positive,
        track.reliability,
    )
    if promotion_for(track, SEED, rung) is not None:
        assert promotion_for(better, SEED, rung) is not None


def failures(*hours_ago: float, now=T0) -> list[Outcome]:
    return [Outcome(i, now - timedelta(hours=h), True) for i, h in enumerate(hours_ago, 1)]


TOP = Rung(3, requires_approval=False)


def demote(outcomes=(), feedback=None, rung=TOP, minimum=0.0, since=None):
    return demotion_for(
        outcomes, feedback, rung, minimum_positive_rate=minimum, thresholds=SEED, now=T0,
        since=since,
    )  # fmt: skip


def test_two_failures_in_the_window_lower_to_l1_saying_which():
    demotion = demote(failures(20, 1))

    assert demotion is not None
    assert demotion.lowered == Rung(1, requires_approval=True)
    assert demotion.cause == "failures"
    assert "2 automatic fixes failed or were rolled back within 24 h" in demotion.reason
    assert "(executions #1, #2)" in demotion.reason


def test_one_failure_or_failures_outside_the_window_lower_nothing():
    assert demote(failures(1)) is None
    assert demote(failures(30, 1)) is None
    assert demote([Outcome(1, T0, False), Outcome(2, T0, False)]) is None


def test_failures_before_the_level_was_reached_are_a_clean_slate():
    assert demote(failures(3, 1), since=T0 - timedelta(hours=2)) is None
    assert demote(failures(3, 1), since=T0 - timedelta(hours=4)) is not None


def test_feedback_below_the_policys_minimum_lowers_to_l1():
    demotion = demote(feedback=FeedbackShare(given=4, positive=2), minimum=0.8)

    assert demotion is not None and demotion.cause == "feedback"
    assert "positive feedback fell to 50% (2 of 4), below the policy's minimum 80%" in (
        demotion.reason
    )
    assert demote(feedback=FeedbackShare(given=5, positive=4), minimum=0.8) is None
    assert demote(feedback=FeedbackShare(given=0, positive=0), minimum=0.8) is None


@given(
    st.lists(st.tuples(st.floats(-48, 48), st.booleans()), max_size=8),
    rungs,
    st.one_of(st.none(), st.builds(FeedbackShare, st.integers(0, 9), st.integers(0, 9))),
    st.floats(0, 1),
)
def test_a_demotion_only_ever_lowers_to_l1_from_above_it(ends, rung, feedback, minimum):
    outcomes = [Outcome(i, T0 - timedelta(hours=h), failed) for i, (h, failed) in enumerate(ends)]
    if feedback is not None and feedback.positive > feedback.given:
        feedback = FeedbackShare(feedback.positive, feedback.given)
    demotion = demote(outcomes, feedback, rung, minimum)
    if rung.level <= 1:
        assert demotion is None
    elif demotion is not None:
        assert demotion.lowered == Rung(1, True) and demotion.current == rung


def test_a_verdict_agrees_by_resolution_accuracy_else_by_its_type():
    assert verdict_agrees("negative", True) is True
    assert verdict_agrees("positive", False) is False
    assert verdict_agrees("positive", None) is True
    assert verdict_agrees("negative", None) is False
    assert verdict_agrees("neutral", None) is None


def test_shadow_agreement_counts_one_case_per_ticket_after_its_decision():
    decisions = [ShadowDecision("A", T0), ShadowDecision("A", T0 + timedelta(hours=1))]
    decisions += [ShadowDecision("B", T0), ShadowDecision("C", T0), ShadowDecision("D", T0)]
    verdicts = [
        Verdict("A", T0 + timedelta(hours=2), True),
        Verdict("A", T0 + timedelta(hours=3), False),  # its first verdict counted
        Verdict("B", T0 - timedelta(hours=1), False),  # before the decision: another matter
        Verdict("C", T0 + timedelta(hours=1), None),  # neutral says nothing
        Verdict("C", T0 + timedelta(hours=2), False),
        Verdict("E", T0 + timedelta(hours=1), True),  # no shadow decision
    ]

    assert shadow_agreement(decisions, verdicts) == Agreement(cases=2, agreed=1)
    assert Agreement(2, 1).line() == "1 of 2 cases agreed (50%)"


@given(
    st.lists(st.tuples(st.sampled_from("ABCDE"), st.integers(0, 9)), max_size=12),
    st.lists(
        st.tuples(st.sampled_from("ABCDEF"), st.integers(0, 9), st.sampled_from([True, False])),
        max_size=12,
    ),
)  # fmt: skip
def test_shadow_agreement_is_a_share_of_decided_tickets(decided, said):
    decisions = [ShadowDecision(t, T0 + timedelta(hours=h)) for t, h in decided]
    verdicts = [Verdict(t, T0 + timedelta(hours=h), a) for t, h, a in said]

    agreement = shadow_agreement(decisions, verdicts)

    assert 0 <= agreement.agreed <= agreement.cases <= len({t for t, _ in decided})
    assert agreement.share is None or 0 <= agreement.share <= 1


def test_enforcing_needs_the_minimum_agreement_over_the_minimum_cases():
    assert enforce_refusal(Agreement(20, 18), SEED) is None
    refusal = enforce_refusal(Agreement(20, 17), SEED)
    assert "at least 90% of the shadow decisions over at least 20 cases" in refusal
    assert "so far 17 of 20 cases agreed (85%)" in refusal
    assert enforce_refusal(Agreement(19, 19), SEED) is not None
    assert "no cases yet" in enforce_refusal(Agreement(0, 0), SEED)


# --- The flows --------------------------------------------------------------------------


def disk_policy() -> Policy:
    return Policy.objects.get(category="disk", enabled=True)


def set_policy(user, reason="test setup", **values) -> Policy:
    policy = disk_policy()
    for name, value in values.items():
        setattr(policy, name, value)
    save_policy(policy, actor=user, reason=reason, now=timezone.now())
    return policy


def heal(agent: AgentClient) -> Ticket:
    """A disk problem fixed automatically and verified by fresh metrics."""
    [result] = agent.post_metrics(agent.sample("disk")).json()["results"]
    decision = Ticket.objects.get(ticket_id=result["ticket_id"]).decisions.first()
    assert result["decision"] == "AUTO_HEAL", "\n".join(decision.reasons)
    [action] = agent.take_actions()
    assert agent.report(action, ok=True).status_code == 200
    agent.post_metrics(agent.sample())
    return Ticket.objects.get(ticket_id=result["ticket_id"])


def fail(agent: AgentClient) -> Ticket:
    """A disk fix that fails on the host and is rolled back."""
    [result] = agent.post_metrics(agent.sample("disk")).json()["results"]
    assert result["decision"] == "AUTO_HEAL", result
    [action] = agent.take_actions()
    agent.report(action, ok=False, output="disk still full")
    [rollback] = agent.take_actions()
    agent.report(rollback, ok=True)
    return Ticket.objects.get(ticket_id=result["ticket_id"])


def feedback(ticket: Ticket, user, kind="positive", **fields) -> Feedback:
    return give_feedback(
        Feedback(ticket=ticket, feedback_type=kind, **fields),
        actor=user,
        reason="",
        now=timezone.now(),
    )


@pytest.fixture
def agents(agent, django_capture_on_commit_callbacks):
    """Agents of three hosts, each with its own open ticket per problem."""
    others = [
        AgentClient(
            Client(), *add_host(name, now=timezone.now()), django_capture_on_commit_callbacks
        )
        for name in ("web-02", "web-03")
    ]
    return [agent, *others]


def test_twenty_verified_fixes_with_positive_feedback_are_proposed_with_their_numbers(agent, alice):
    # given a disk policy at L2 (acts, people notified), and its fixes from then on
    set_policy(alice, autonomy_level=2, max_actions_per_hour=100, reason="start at L2")
    for _ in range(19):
        feedback(heal(agent), alice)
    assert propose_promotions(timezone.now()) == 0  # 19: people's still

    # when the twentieth fix is verified and liked
    feedback(heal(agent), alice)
    made = propose_promotions(timezone.now())

    # then one proposal, L2 to L3, with the numbers behind it, audited
    assert made == 1
    proposal = AutonomyProposal.objects.get()
    assert (proposal.status, proposal.policy, proposal.from_level, proposal.to_level) == (
        ProposalStatus.PROPOSED,
        disk_policy(),
        2,
        3,
    )
    numbers = proposal.numbers
    assert (numbers["fixes"], numbers["succeeded"], numbers["success_rate"]) == (20, 20, 1.0)
    assert (numbers["feedback"], numbers["positive"], numbers["positive_rate"]) == (20, 20, 1.0)
    assert numbers["reliability"] >= 90.0  # the seed's very high confidence
    proposed = AuditEvent.objects.get(action="autonomy.proposed")
    assert proposed.summary.startswith("proposed one step more autonomy for policy ")
    assert "disk-self-healing: L2 to L3: since " in proposed.summary
    assert "UTC, 20 fixes, 20 verified (100%); 20 of 20 feedback positive" in proposed.summary
    assert propose_promotions(timezone.now()) == 0  # still holds: kept, not made twice


def test_a_supervisor_accepts_a_proposal_in_one_click_and_the_policy_moves_one_level(
    agent, alice, settings
):
    settings.WARDEN_PROMOTION_MIN_FIXES = 3
    settings.WARDEN_PROMOTION_MIN_RELIABILITY = 0.0
    set_policy(alice, autonomy_level=2, reason="start at L2")
    for _ in range(3):
        feedback(heal(agent), alice)
    propose_promotions(timezone.now())
    proposal = AutonomyProposal.objects.get()
    versions = disk_policy().history.count()

    # when alice ticks it and clicks Accept (the confirmation's one click)
    page = logged_in(alice).post(
        PROPOSALS,
        {
            "action": "accept_action",
            "_selected_action": [proposal.pk],
            "confirmed": "yes",
            "note": "the cleanups have been flawless",
        },
        follow=True,
    )

    # then the policy is at L3, a new version of it, audited with the numbers
    assert b"Accepted: policy disk-self-healing moved L2 to L3." in page.content
    policy = disk_policy()
    assert policy.autonomy_level == 3
    assert policy.history.count() == versions + 1
    latest = policy.history.latest()
    assert latest.history_user == alice
    assert latest.history_change_reason.startswith(f"accepted proposal #{proposal.pk}: ")
    promoted = AuditEvent.objects.get(action="policy.promoted")
    assert promoted.actor == "user:alice"
    assert promoted.summary.startswith("policy disk-self-healing raised from L2 to L3")
    assert promoted.data["numbers"]["fixes"] == 3
    assert promoted.data["values"]["autonomy_level"] == {"from": 2, "to": 3}
    proposal.refresh_from_db()
    assert (proposal.status, proposal.decided_by) == (ProposalStatus.ACCEPTED, alice)
    assert AuditEvent.objects.filter(action="autonomy.accepted").count() == 1

    # and a second click changes nothing
    with pytest.raises(ProposalError, match="is accepted"):
        accept_proposal(proposal, actor=alice, now=timezone.now(), reason="")
    assert disk_policy().autonomy_level == 3


def test_an_approver_cannot_accept_a_proposal(agent, alice, bob, settings):
    settings.WARDEN_PROMOTION_MIN_FIXES = 1
    settings.WARDEN_PROMOTION_MIN_RELIABILITY = 0.0
    set_policy(alice, autonomy_level=2)
    feedback(heal(agent), alice)
    propose_promotions(timezone.now())
    proposal = AutonomyProposal.objects.get()

    logged_in(bob).post(
        PROPOSALS,
        {"action": "accept_action", "_selected_action": [proposal.pk], "confirmed": "yes"},
    )

    assert disk_policy().autonomy_level == 2
    assert AutonomyProposal.objects.get().status == ProposalStatus.PROPOSED


def test_a_proposal_whose_policy_moved_meanwhile_is_refused_then_superseded(agent, alice, settings):
    settings.WARDEN_PROMOTION_MIN_FIXES = 1
    settings.WARDEN_PROMOTION_MIN_RELIABILITY = 0.0
    set_policy(alice, autonomy_level=2)
    feedback(heal(agent), alice)
    propose_promotions(timezone.now())
    proposal = AutonomyProposal.objects.get()
    set_policy(alice, autonomy_level=1, reason="back to people for the migration")

    with pytest.raises(ProposalError, match="nothing changed"):
        accept_proposal(proposal, actor=alice, now=timezone.now(), reason="")
    assert disk_policy().autonomy_level == 1

    propose_promotions(timezone.now())
    proposal.refresh_from_db()
    assert proposal.status == ProposalStatus.SUPERSEDED


def test_two_failed_automatic_fixes_demote_the_policy_and_pattern_at_once_and_tell_why(
    agents, alice, mailoutbox, settings
):
    settings.WARDEN_NOTICE_GROUP_WAIT_SECONDS = 0
    assert disk_policy().autonomy_level == 3

    # one failure is within what is tolerated
    first = fail(agents[0])
    assert disk_policy().autonomy_level == 3
    assert not AuditEvent.objects.filter(action="policy.demoted").exists()

    # the second within 24 h lowers the policy to L1 in that same report
    second = fail(agents[1])
    policy = disk_policy()
    assert (policy.autonomy_level, policy.requires_approval) == (1, True)
    demoted = AuditEvent.objects.get(action="policy.demoted")
    assert demoted.actor == "system"
    assert demoted.ticket_id == second.ticket_id
    assert demoted.summary.startswith(
        "policy disk-self-healing lowered from L3 without approval to L1"
    )
    assert "2 automatic fixes failed or were rolled back within 24 h" in demoted.summary
    assert demoted.data["cause"] == "failures"
    assert policy.history.latest().history_change_reason.startswith("2 automatic fixes failed")
    # the failed report comes first in the trail, then why autonomy was lost
    failed = AuditEvent.objects.filter(action="execution.failed", ticket_id=second.ticket_id)
    assert failed.get().sequence < demoted.sequence
    # the pattern both failures share is lowered too, until it earns its way back
    assert first.pattern_id == second.pattern_id
    assert PatternAutonomy.objects.get(pattern=second.pattern).autonomy_level == 1
    assert AuditEvent.objects.filter(action="pattern.demoted").count() == 1

    # and people are told why
    notice = Notice.objects.get(kind=NoticeKind.AUTONOMY_LOWERED)
    assert notice.ticket.ticket_id == second.ticket_id
    assert "lowered from L3 without approval to L1" in notice.summary
    assert any(m.subject.startswith("[Warden] Autonomy lowered to L1") for m in mailoutbox)

    # from now on a person approves each disk fix
    [result] = agents[2].post_metrics(agents[2].sample("disk")).json()["results"]
    assert result["decision"] == "HITL_REQUIRED"
    assert ApprovalRequest.objects.filter(ticket__ticket_id=result["ticket_id"]).exists()


def test_an_automatic_fix_queued_before_a_demotion_does_not_start_after_it(agents, alice):
    set_policy(alice, blast_radius_max_percent=100.0, reason="two hosts at once is fine")
    fail(agents[0])
    [queued] = agents[1].post_metrics(agents[1].sample("disk")).json()["results"]
    decision = Ticket.objects.get(ticket_id=queued["ticket_id"]).decisions.get()
    assert queued["decision"] == "AUTO_HEAL", decision.reasons  # for web-02, not yet taken

    fail(agents[2])  # the second failure lowers the policy

    assert agents[1].take_actions() == []
    execution = Execution.objects.get(ticket__ticket_id=queued["ticket_id"])
    assert execution.state == ExecutionState.CANCELLED
    assert "is now at L1 (assisted" in execution.cancel_reason


def test_a_supervisor_rolling_back_a_verified_fix_counts_as_a_failure(agents, alice):
    fail(agents[0])
    healed = heal(agents[1])
    execution = Execution.objects.get(ticket=healed)

    roll_back_execution(
        execution, actor=alice, reason="it deleted the wrong logs", now=timezone.now()
    )

    assert disk_policy().autonomy_level == 1
    demoted = AuditEvent.objects.get(action="policy.demoted")
    assert f"#{execution.pk}" in demoted.summary


def test_failed_fixes_people_approved_cost_no_autonomy(agents, alice, bob):
    # given a policy at L2 that still asks people for every fix
    set_policy(alice, autonomy_level=2, requires_approval=True, auto_approve_threshold=None)

    # when two fixes people approved fail
    for agent in agents[:2]:
        [result] = agent.post_metrics(agent.sample("disk")).json()["results"]
        request = ApprovalRequest.objects.get(ticket__ticket_id=result["ticket_id"])
        with agent.capture(execute=True):
            approve_request(request, actor=bob, reason="go", now=timezone.now())
        [action] = agent.take_actions()
        agent.report(action, ok=False, output="disk still full")

    # then the failures are people's, not the automation's: the level stands
    assert Execution.objects.filter(state=ExecutionState.ROLLBACK_PENDING).count() == 2
    assert disk_policy().autonomy_level == 2
    assert not AuditEvent.objects.filter(action__endswith=".demoted").exists()


def test_feedback_below_the_policys_minimum_demotes_at_once(agent, alice):
    ticket = heal(agent)
    set_policy(alice, min_positive_feedback_rate=0.8, reason="we want happy people")

    with agent.capture(execute=True):  # notices are recorded after the commit
        feedback(ticket, alice, kind="negative", comment="it removed logs we needed")

    policy = disk_policy()
    assert policy.autonomy_level == 1
    demoted = AuditEvent.objects.get(action="policy.demoted")
    assert "positive feedback fell to 0% (0 of 1), below the policy's minimum 80%" in (
        demoted.summary
    )
    assert demoted.ticket_id == ticket.ticket_id
    assert PatternAutonomy.objects.get(pattern=ticket.pattern).autonomy_level == 1
    assert Notice.objects.filter(kind=NoticeKind.AUTONOMY_LOWERED).count() == 1


def test_positive_feedback_changes_no_level(agent, alice):
    ticket = heal(agent)
    set_policy(alice, min_positive_feedback_rate=0.8)

    feedback(ticket, alice, kind="positive")

    assert disk_policy().autonomy_level == 3
    assert not AuditEvent.objects.filter(action__endswith=".demoted").exists()


def test_a_lowered_pattern_earns_its_way_back_once_its_policy_stands_higher(
    agents, alice, settings
):
    settings.WARDEN_PROMOTION_MIN_FIXES = 1
    settings.WARDEN_PROMOTION_MIN_RELIABILITY = 0.0
    fail(agents[0])
    fail(agents[1])
    pattern = PatternAutonomy.objects.get().pattern
    # the policy earns L2 back first (here: a supervisor raises it by hand)
    set_policy(alice, autonomy_level=2, requires_approval=False, reason="vendor fixed the bug")
    [result] = agents[2].post_metrics(agents[2].sample("disk")).json()["results"]
    assert result["decision"] == "HITL_REQUIRED"  # the pattern still asks a person
    assert "The ticket's pattern was lowered to L1" in " ".join(
        Ticket.objects.get(ticket_id=result["ticket_id"]).decisions.get().reasons
    )

    # a fix people approved, verified, and liked earns the pattern a proposal
    request = ApprovalRequest.objects.get(ticket__ticket_id=result["ticket_id"])
    with agents[2].capture(execute=True):
        approve_request(request, actor=alice, reason="go", now=timezone.now())
    [action] = agents[2].take_actions()
    agents[2].report(action, ok=True)
    agents[2].post_metrics(agents[2].sample())
    feedback(Ticket.objects.get(ticket_id=result["ticket_id"]), alice)
    propose_promotions(timezone.now())

    proposal = AutonomyProposal.objects.get(pattern=pattern, status=ProposalStatus.PROPOSED)
    assert (proposal.from_level, proposal.to_level) == (1, 2)
    accept_proposal(proposal, actor=alice, now=timezone.now(), reason="")
    assert PatternAutonomy.objects.get().autonomy_level == 2
    assert AuditEvent.objects.filter(action="pattern.promoted").count() == 1


# --- Shadow mode ---------------------------------------------------------------------------


def shadow_cases(agent, user, verdicts) -> Policy:
    """The disk policy in shadow mode, and one ticket per verdict: decided in shadow, then
    judged by a person (resolution accurate or not) and closed."""
    policy = set_policy(user, mode="shadow", reason="watch before acting")
    for accurate in verdicts:
        [result] = agent.post_metrics(agent.sample("disk")).json()["results"]
        ticket = Ticket.objects.get(ticket_id=result["ticket_id"])
        assert ticket.decisions.get().shadow
        feedback(ticket, user, kind="positive" if accurate else "negative",
                 resolution_accurate=accurate)  # fmt: skip
        close_ticket(ticket, actor=user, resolved=True, reason="by hand", now=timezone.now())
    return policy


@pytest.fixture
def shadow_minimums(settings):
    settings.WARDEN_SHADOW_MIN_CASES = 3
    settings.WARDEN_SHADOW_MIN_AGREEMENT = 0.9


def test_switching_to_enforce_below_the_minimum_agreement_is_refused_naming_the_field(
    agent, alice, shadow_minimums
):
    policy = shadow_cases(agent, alice, [True, True, False])
    versions = policy.history.count()

    policy.mode = "enforce"
    with pytest.raises(ValidationError) as refused:
        save_policy(policy, actor=alice, reason="looks good to me", now=timezone.now())

    assert list(refused.value.message_dict) == ["mode"]
    assert "so far 2 of 3 cases agreed (67%)" in refused.value.message_dict["mode"][0]
    assert disk_policy().mode == "shadow"
    assert disk_policy().history.count() == versions


def test_switching_to_enforce_with_an_override_and_a_reason_is_audited(
    agent, alice, shadow_minimums
):
    policy = shadow_cases(agent, alice, [True, False])

    policy.mode = "enforce"
    save_policy(
        policy, actor=alice, reason="incident: we need the cleanups now",
        override_shadow_agreement=True,
        now=timezone.now(),
    )  # fmt: skip

    assert disk_policy().mode == "enforce"
    enforced = AuditEvent.objects.get(action="policy.enforced")
    assert enforced.data["override"] is True
    assert enforced.data["shadow_agreement"] == {"cases": 2, "agreed": 1, "share": 0.5}
    assert "(below the minimum: overridden)" in enforced.summary
    assert enforced.data["reason"] == "incident: we need the cleanups now"


def test_enough_agreement_switches_to_enforce_without_an_override(agent, alice, shadow_minimums):
    policy = shadow_cases(agent, alice, [True, True, True])

    policy.mode = "enforce"
    save_policy(policy, actor=alice, reason="three for three", now=timezone.now())

    enforced = AuditEvent.objects.get(action="policy.enforced")
    assert enforced.data["override"] is False
    assert "at 3 of 3 cases agreed (100%)" in enforced.summary


def test_the_policy_page_shows_its_shadow_agreement_and_asks_for_the_override(
    agent, alice, shadow_minimums
):
    policy = shadow_cases(agent, alice, [True, False, False])
    browser = logged_in(alice)
    url = f"/admin/governance/policy/{policy.pk}/change/"

    page = browser.get(url)
    assert b"Shadow agreement" in page.content
    assert b"1 of 3 cases agreed (33%)" in page.content

    # enforce without the override: the form says why, on the mode field
    data = form_data(page, mode="enforce", change_reason="ready")
    refused = browser.post(url, data)
    assert refused.status_code == 200
    assert "mode" in refused.context["adminform"].form.errors
    assert disk_policy().mode == "shadow"

    # with it, and the reason, the switch is made and audited as overridden
    data = form_data(page, mode="enforce", change_reason="the vendor asked", **{
        "override_shadow_agreement": True})  # fmt: skip
    saved = browser.post(url, data)
    assert saved.status_code == 302
    assert disk_policy().mode == "enforce"
    assert AuditEvent.objects.get(action="policy.enforced").data["override"] is True

    # an enforcing policy has no shadow record to show
    assert b"Shadow agreement" not in browser.get(url).content


def test_the_shadow_agreement_reads_as_one_sentence_before_any_case(agent, alice):
    policy = disk_policy()
    Policy.objects.filter(pk=policy.pk).update(mode="shadow")

    page = logged_in(alice).get(f"/admin/governance/policy/{policy.pk}/change/")

    assert (
        b"People&#x27;s later feedback on its shadow decisions: no cases yet (no shadow "
        b"decision has had people&#x27;s feedback)." in page.content
    )


def test_open_proposals_are_listed_for_those_who_may_see_them_and_on_the_admin_index(
    agent, alice, dave, settings
):
    settings.WARDEN_PROMOTION_MIN_FIXES = 1
    settings.WARDEN_PROMOTION_MIN_RELIABILITY = 0.0
    set_policy(alice, autonomy_level=2)
    feedback(heal(agent), alice)
    propose_promotions(timezone.now())
    proposal = AutonomyProposal.objects.get()

    index = logged_in(alice).get("/admin/")
    assert b"Autonomy proposals to decide" in index.content
    listed = logged_in(alice).get(PROPOSALS)
    assert b"policy disk-self-healing" in listed.content and b"L2 to L3" in listed.content
    assert b"accept_action" in listed.content

    # compliance reads the proposal and its numbers, and is offered nothing to decide
    browser = logged_in(dave)
    assert b"accept_action" not in browser.get(PROPOSALS).content
    page = browser.get(f"{PROPOSALS}{proposal.pk}/change/")
    assert page.status_code == 200 and b"succeeded" in page.content


def test_the_schedule_proposes_and_a_dismissal_needs_a_note(agent, alice, settings):
    settings.WARDEN_PROMOTION_MIN_FIXES = 1
    settings.WARDEN_PROMOTION_MIN_RELIABILITY = 0.0
    schedule = Schedule.objects.get(name="warden-autonomy")
    assert (schedule.func, schedule.minutes) == ("governance.tasks.propose_autonomy_promotions", 5)
    set_policy(alice, autonomy_level=2)
    feedback(heal(agent), alice)

    assert propose_autonomy_promotions() == 1
    proposal = AutonomyProposal.objects.get()

    with pytest.raises(ValidationError):
        dismiss_proposal(proposal, actor=alice, now=timezone.now(), reason=" ")
    dismiss_proposal(proposal, actor=alice, now=timezone.now(), reason="not before the audit")
    proposal.refresh_from_db()
    assert (proposal.status, proposal.note) == (ProposalStatus.DISMISSED, "not before the audit")
    assert disk_policy().autonomy_level == 2
    assert (
        "dismissed: not before the audit"
        in AuditEvent.objects.get(action="autonomy.dismissed").summary
    )
