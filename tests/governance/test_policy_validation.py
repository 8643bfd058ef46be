"""Policy validation: L4 is refused wherever a policy is written; overnight windows are fine."""

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from django.core.exceptions import ValidationError

from governance.decisions.facts import policy_snapshot
from governance.models import Policy
from governance.rules.defaults import default_policy, model_fields
from governance.rules.engine import decide
from governance.rules.facts import ModelOutput, RunbookFacts, Statistics, Switches, TicketFacts
from tests.governance.admin_pages import form_data, logged_in

ADD = "/admin/governance/policy/add/"
L4_REFUSED = "Autonomy level L4 is not allowed: Warden runs at L0-L3 only"


def disk_draft(**changes) -> Policy:
    fields = {**model_fields(default_policy("disk")), "name": "disk-draft", "enabled": False}
    return Policy(**{**fields, **changes})


def add_in_admin(user, **fields):
    browser = logged_in(user)
    page = browser.get(ADD)
    data = form_data(
        page,
        name="disk-overnight",
        category="disk",
        enabled=False,
        change_reason="overnight window for disk",
        **fields,
    )
    return browser.post(ADD, {**data, "_save": "Save"})


@pytest.mark.parametrize("level", [4, 5])
def test_the_model_refuses_levels_beyond_l3(db, level):
    # when
    with pytest.raises(ValidationError) as refused:
        disk_draft(autonomy_level=level).full_clean()

    # then the error is on the field and says why
    assert refused.value.message_dict["autonomy_level"] == [
        f"Autonomy level L{level} is not allowed: Warden runs at L0-L3 only "
        "(L4, full autonomy, is always refused)."
    ]


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_the_model_accepts_l0_to_l3(db, level):
    disk_draft(autonomy_level=level).full_clean()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("forbidden_commands", "rm", "Give a list of names"),
        ("forbidden_commands", [1], "Give a list of names"),
        ("approvers", "alice", "Give a list of names"),
        ("allowed_systems", [""], "Give a list of names"),
        ("allowed_days", "monday", "Give a list of names"),
        ("allowed_action_types", ["safe_write", "reboot"], "Unknown action types: reboot"),
    ],
)
def test_safety_lists_must_be_lists_of_names(db, field, value, message):
    # when a supervisor writes a bare string or a wrong item where a list belongs
    with pytest.raises(ValidationError) as refused:
        disk_draft(**{field: value}).full_clean()

    # then the field is named and nothing is read letter by letter
    assert message in refused.value.message_dict[field][0]


def test_the_admin_add_form_refuses_l4_and_names_the_field(alice):
    # when a supervisor posts L4 (the select offers only L0-L3; the request is hand-made)
    page = add_in_admin(alice, autonomy_level=4)

    # then the form comes back with the error on the autonomy level, and nothing is saved
    assert page.status_code == 200
    errors = page.context["adminform"].form.errors
    assert list(errors) == ["autonomy_level"]
    assert L4_REFUSED in errors["autonomy_level"][0]
    assert L4_REFUSED.encode() in page.content
    assert b'class="errorlist' in page.content
    assert not Policy.objects.filter(name="disk-overnight").exists()


def test_the_admin_adds_an_overnight_window_in_a_time_zone(alice):
    # when a supervisor adds a draft that may act from 22:00 to 06:00 Paris time
    page = add_in_admin(
        alice,
        autonomy_level=3,
        allowed_hours_start=22,
        allowed_hours_end=6,
        timezone="Europe/Paris",
    )

    # then it is saved as an overnight window, and the engine reads it that way
    assert page.status_code == 302
    policy = Policy.objects.get(name="disk-overnight")
    assert (policy.allowed_hours_start, policy.allowed_hours_end) == (22, 6)
    draft = replace(policy_snapshot(policy), enabled=True)  # as if enabled after review
    # 2025-03-12 is in winter time: Paris is UTC+1
    assert window_ok(draft, datetime(2025, 3, 12, 22, 30, tzinfo=UTC))  # 23:30 there
    assert window_ok(draft, datetime(2025, 3, 13, 4, 59, tzinfo=UTC))  # 05:59 there
    assert not window_ok(draft, datetime(2025, 3, 13, 5, 0, tzinfo=UTC))  # 06:00 there
    assert not window_ok(draft, datetime(2025, 3, 12, 20, 59, tzinfo=UTC))  # 21:59 there


def test_the_admin_refuses_an_unknown_time_zone_by_name(alice):
    # when
    page = add_in_admin(alice, allowed_hours_start=22, allowed_hours_end=6, timezone="Paris")

    # then
    assert page.context["adminform"].form.errors["timezone"] == ["Unknown time zone 'Paris'."]


def test_the_admin_refuses_half_a_window(alice):
    # when
    page = add_in_admin(alice, allowed_hours_start=22)

    # then
    assert page.context["adminform"].form.errors["allowed_hours_end"] == [
        "Give both allowed hours, or neither."
    ]


def window_ok(policy, now: datetime) -> bool:
    """Whether the engine finds `now` inside the policy's time window for a disk problem."""
    decision = decide(
        TicketFacts("INC-1", "disk", "web-01", {}, True, 1),
        ModelOutput(severity=1, confidence=0.95),
        policy,
        RunbookFacts("clean-temp", "safe_write", "linux", True, True, ("logrotate",)),
        Switches(),
        Statistics(hosts_in_scope=20),
        now,
    )
    return decision.safety_checks["time_window_ok"]
