"""Where people read, every code has its words: labels for each kind of code, lists and
pages that say "Needs a person" with the code only in brackets or on hover, one date
format with its zone, and a favicon."""

import re

import pytest
from django.utils.html import escape

from governance.choices import RiskLevel
from governance.rules import labels
from governance.rules.checks import safety_checks
from governance.rules.facts import OUTCOMES
from remediation.choices import ActionType, Category, ExecutionState, TicketStatus
from remediation.models import Ticket
from scoring.choices import Severity
from scoring.features import FEATURE_NAMES, METRIC_NAMES

DATE_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC")
# A code shown raw: not inside [brackets] nor a title="" people hover.
RAW_CODE = re.compile(
    r"(?<![\[\"])\b(HITL_REQUIRED|AUTO_HEAL|NO_ACTION|safe_write|critical_write)\b"
)


@pytest.mark.parametrize(
    ("codes", "words"),
    [
        (Severity.values, labels.SEVERITY_LABELS),
        (OUTCOMES, labels.OUTCOME_LABELS),
        (ActionType.values, labels.ACTION_TYPE_LABELS),
        (FEATURE_NAMES, labels.FEATURE_LABELS),
        (METRIC_NAMES, labels.FEATURE_LABELS),
    ],
    ids=["severity", "outcome", "action type", "feature", "metric"],
)
def test_every_code_of_each_kind_has_its_label(codes, words):
    missing = [code for code in codes if code not in words]
    assert missing == [], f"codes without a label: {missing}"
    # A label is words, not the code again.
    assert all(words[code] != code and "_" not in words[code] for code in codes)


def test_every_safety_check_has_its_label():
    names = set(safety_checks.__code__.co_consts) & {
        "time_window_ok",
        "rate_limit_ok",
        "backup_available",
        "system_healthy",
        "blast_radius_ok",
    }
    assert names <= set(labels.CHECK_LABELS)


@pytest.mark.parametrize("choices", [RiskLevel, TicketStatus, ExecutionState, Category])
def test_the_choices_people_read_are_words(choices):
    assert all("_" not in str(label) and label != value for value, label in choices.choices)


def test_reason_lines_put_the_code_in_brackets_after_its_words():
    line = labels.model_statement(
        2, 0.03, (0.52, 0.45, 0.03), (("firewall_change_requested", 0.99),)
    )

    assert line.startswith("The model picks needs a person [HITL_REQUIRED]")
    assert "no action 52%, auto-heal 45%, needs a person 3%" in line
    assert "mostly from firewall change requested" in line


def test_a_class_picked_at_a_low_probability_says_so():
    said = labels.class_with_probability(2, 0.03)

    assert said == "Needs a person, only 3% probable: picked as the cautious class"
    assert labels.class_with_probability(1, 0.98) == "Auto-heal, 98% probable"


def test_the_model_drivers_read_as_words_with_their_pull():
    said = labels.driver_list((("firewall_change_requested", 0.99), ("cpu_usage", -0.1)), 2)

    assert said == (
        "firewall change requested [firewall_change_requested], strongly towards needs a "
        "person (+99 points); CPU usage [cpu_usage], slightly away from needs a person "
        "(-10 points)"
    )


def waiting_firewall_ticket(agent) -> Ticket:
    [result] = agent.post_metrics(agent.sample("firewall")).json()["results"]
    return Ticket.objects.get(ticket_id=result["ticket_id"])


@pytest.mark.parametrize(
    "page",
    [
        "/admin/remediation/ticket/",
        "/admin/remediation/ticket/{ticket}/change/",
        "/admin/governance/approvalrequest/",
        "/admin/governance/approvalrequest/{request}/change/",
        "/admin/governance/decision/",
        "/admin/governance/decision/{decision}/change/",
        "/admin/governance/auditevent/",
        "/tickets/{ticket_id}/evidence",
    ],
)
def test_pages_say_needs_a_person_and_no_raw_code_and_one_date_format(agent, client, alice, page):
    # given a firewall change waiting for people
    ticket = waiting_firewall_ticket(agent)
    decision = ticket.decisions.get()
    client.force_login(alice)

    # when a supervisor opens the page
    path = page.format(
        ticket=ticket.pk,
        ticket_id=ticket.ticket_id,
        request=ticket.approval_requests.get().pk if "{request}" in page else 0,
        decision=decision.pk,
    )
    html = client.get(path).content.decode()

    # then it says the words, the code at most in brackets or on hover
    assert "Needs a person" in html or "needs a person" in html
    text = re.sub(r"<[^>]+>", " ", html)  # what people read: no markup, no hover titles
    raw = [text[max(0, m.start() - 80) : m.end() + 20] for m in RAW_CODE.finditer(text)]
    assert raw == []
    # and every time in the one format with its zone, never the locale's
    assert DATE_TIME.search(html) or page == "/admin/governance/approvalrequest/"
    assert not re.search(r"\b[ap]\.m\.", html)
    assert escape("[HITL_REQUIRED]") in html or 'title="HITL_REQUIRED"' in html


def test_the_favicon_is_served_and_linked(client, alice):
    answer = client.get("/favicon.ico")
    assert answer.status_code == 301
    assert answer["Location"].endswith("favicon.svg")

    client.force_login(alice)
    page = client.get("/admin/").content.decode()
    assert re.search(r'<link rel="icon"[^>]+favicon\.svg', page)


def test_an_audited_object_type_reads_as_words():
    assert labels.object_type_label("ApprovalRequest") == "Approval request"
    assert labels.object_type_label("ModelVersion") == "Model version"


def test_the_pages_filter_reads_a_class_code_or_number_with_its_probability():
    from governance.templatetags.warden_admin import class_with_probability

    for severity in (2, "HITL_REQUIRED"):
        shown = class_with_probability(severity, 0.03)
        assert "Needs a person, only 3% probable: picked as the cautious class" in shown
        assert 'title="HITL_REQUIRED"' in shown


def test_the_policy_form_says_each_thresholds_scale(client, alice):
    from governance.models import Policy

    client.force_login(alice)

    page = client.get(f"/admin/governance/policy/{Policy.objects.first().pk}/change/")

    assert b"A probability from 0 to 1: 0.8 is 80%." in page.content
    assert b"A score from 0 to 100." in page.content
