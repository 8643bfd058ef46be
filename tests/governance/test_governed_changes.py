"""One audited way to change governed state: admin edits, history reverts and access
changes all go through a use case that checks the permission, takes a reason and
writes the audit event; what a role may not do leaves everything as it was."""

import pytest
from django.contrib.auth.models import Group, User
from django.urls import reverse
from django.utils import timezone

from governance.approvals.actions import reject_request
from governance.models import ApprovalRequest, AuditEvent, Pause, Policy
from governance.pauses.actions import pause_automation
from governance.policies.actions import save_policy
from remediation.actions import add_host, rotate_host_key
from remediation.models import Host, Runbook
from tests.governance.admin_pages import form_data, logged_in

DISK = "disk-self-healing"


def history_url(obj, version) -> str:
    opts = obj._meta
    return reverse(
        f"admin:{opts.app_label}_{opts.model_name}_simple_history",
        args=[obj.pk, version.history_id],
    )


def a_policy_with_two_versions(alice) -> tuple[Policy, object]:
    policy = Policy.objects.get(name=DISK)
    policy.min_confidence_score = 0.5
    save_policy(policy, actor=alice, reason="looser, briefly", now=timezone.now())
    policy.min_confidence_score = 0.95
    save_policy(policy, actor=alice, reason="tighter again", now=timezone.now())
    return policy, policy.history.filter(min_confidence_score=0.5).latest()


def test_view_only_staff_cannot_revert_through_the_history_page(alice, dave):
    # given a policy whose history holds a looser version
    policy, loose = a_policy_with_two_versions(alice)
    browser = logged_in(dave)  # compliance: may view history, may not change
    page = browser.get(history_url(policy, loose))
    assert page.status_code == 200
    events = AuditEvent.objects.count()

    # when compliance posts the revert form anyway
    response = browser.post(
        history_url(policy, loose),
        {**form_data(page), "change_reason": "trying", "_save": "Save"},
    )

    # then it is refused and nothing changed
    assert response.status_code == 403
    policy.refresh_from_db()
    assert policy.min_confidence_score == 0.95
    assert AuditEvent.objects.count() == events


def test_a_supervisor_reverts_through_the_use_case_with_a_reason(alice):
    policy, loose = a_policy_with_two_versions(alice)
    browser = logged_in(alice)
    page = browser.get(history_url(policy, loose))

    without_reason = browser.post(history_url(policy, loose), {**form_data(page), "_save": "Save"})
    assert without_reason.status_code == 200  # the form asks for the reason
    policy.refresh_from_db()
    assert policy.min_confidence_score == 0.95

    response = browser.post(
        history_url(policy, loose),
        {**form_data(page), "change_reason": "incident 42 needs it", "_save": "Save"},
    )
    assert response.status_code == 302
    policy.refresh_from_db()
    assert policy.min_confidence_score == 0.5
    event = AuditEvent.objects.filter(action="policy.changed").latest("sequence")
    assert event.actor == "user:alice"
    assert event.data["reason"] == "incident 42 needs it"
    assert event.data["values"]["min_confidence_score"] == {"from": 0.95, "to": 0.5}


def test_reverting_a_host_never_brings_back_its_old_agent_key(alice):
    host, _ = add_host("db-01", labels={"role": "db"}, actor=alice, now=timezone.now())
    first = host.history.latest()
    rotate_host_key(host, actor=alice, reason="", now=timezone.now())
    rotated = Host.objects.get(pk=host.pk).api_key_hash
    browser = logged_in(alice)
    page = browser.get(history_url(host, first))

    browser.post(
        history_url(host, first),
        {**form_data(page), "change_reason": "labels as first registered", "_save": "Save"},
    )

    assert Host.objects.get(pk=host.pk).api_key_hash == rotated


def test_nobody_reverts_an_approval_request_to_pending(agent, alice, bob):
    [result] = agent.post_metrics(agent.sample("firewall")).json()["results"]
    request = ApprovalRequest.objects.get(ticket__ticket_id=result["ticket_id"])
    pending = request.history.latest()
    reject_request(request, actor=bob, reason="not now", now=timezone.now())
    browser = logged_in(alice)  # a supervisor, with every permission on requests

    response = browser.post(
        history_url(request, pending),
        {"status": "pending", "change_reason": "second thoughts", "_save": "Save"},
    )

    assert response.status_code == 403
    request.refresh_from_db()
    assert request.status == "rejected"


def test_a_runbook_edit_in_the_admin_needs_a_reason_and_is_audited(alice):
    runbook = Runbook.objects.get(name="clean-temp-and-rotate-logs")
    browser = logged_in(alice)
    url = reverse("admin:remediation_runbook_change", args=[runbook.pk])
    page = browser.get(url)

    refused = browser.post(url, {**form_data(page, description="new words"), "_save": "Save"})
    assert refused.status_code == 200
    assert "change_reason" in refused.context["adminform"].form.errors

    browser.post(
        url,
        {
            **form_data(page, description="new words", change_reason="clearer"),
            "_save": "Save",
        },
    )
    runbook.refresh_from_db()
    assert runbook.description == "new words"
    event = AuditEvent.objects.get(action="runbook.changed")
    assert event.data["changed"] == ["description"] and event.data["reason"] == "clearer"


def test_a_host_edit_in_the_admin_is_audited(alice):
    host, _ = add_host("web-09", labels={}, actor=alice, now=timezone.now())
    browser = logged_in(alice)
    url = reverse("admin:remediation_host_change", args=[host.pk])
    page = browser.get(url)

    browser.post(
        url,
        {
            **form_data(page, labels='{"backup": "yes"}', change_reason="backup taken"),
            "_save": "Save",
        },
    )

    event = AuditEvent.objects.get(action="host.changed")
    assert event.data["values"]["labels"]["to"] == {"backup": "yes"}


def test_group_membership_changes_are_audited(alice):
    eve = User.objects.create_user("eve", is_staff=True)
    browser = logged_in(User.objects.create_superuser("root", "root@example.com", "x"))
    url = reverse("admin:auth_user_change", args=[eve.pk])
    page = browser.get(url)
    approvers = Group.objects.get(name="approvers")

    data = form_data(page, groups=[approvers.pk], change_reason="joins the on-call rota")
    joined = data.pop("date_joined")  # a split date and time widget
    data |= {"date_joined_0": f"{joined:%Y-%m-%d}", "date_joined_1": f"{joined:%H:%M:%S}"}

    response = browser.post(url, {**data, "_save": "Save"})

    assert response.status_code == 302, response.context["adminform"].form.errors
    # alice and root were audited as they were made; this is eve's change, made once.
    event = AuditEvent.objects.get(action="user.access_changed", object_id=str(eve.pk))
    assert event.data["after"]["groups"] == ["approvers"]
    assert event.data["reason"] == "joins the on-call rota"


@pytest.mark.parametrize(("persona", "status"), [("alice", 200), ("dave", 200), ("eve", 403)])
def test_the_console_is_for_those_who_may_read_the_audit_trail(db, request, persona, status):
    if persona == "eve":
        user = User.objects.create_user("eve", is_staff=True)  # staff, no permissions
    else:
        user = request.getfixturevalue(persona)
    assert logged_in(user).get("/console/").status_code == status


def test_policy_lists_are_checkboxes_and_lines_not_json(alice):
    policy = Policy.objects.get(name=DISK)
    browser = logged_in(alice)
    url = reverse("admin:governance_policy_change", args=[policy.pk])
    page = browser.get(url)
    assert b'type="checkbox" name="allowed_action_types" value="read_only"' in page.content

    response = browser.post(
        url,
        {
            **form_data(
                page,
                allowed_action_types=["read_only", "safe_write"],
                allowed_days=["saturday", "sunday"],
                approvers="bob\ncarol, dave",
                change_reason="weekend-only automation",
            ),
            "_save": "Save",
        },
    )

    assert response.status_code == 302
    policy.refresh_from_db()
    assert policy.allowed_action_types == ["read_only", "safe_write"]
    assert policy.allowed_days == ["saturday", "sunday"]
    assert policy.approvers == ["bob", "carol", "dave"]
    reason = policy.history.latest().history_change_reason
    assert reason == "weekend-only automation"  # kept in the history, not "None"


def test_the_admin_index_says_what_needs_attention_now(agent, alice):
    agent.post_metrics(agent.sample("firewall"))
    pause_automation(
        Pause(scope="category", category="disk"),
        actor=alice,
        reason="vendor bug",
        now=timezone.now(),
    )
    page = logged_in(alice).get("/admin/").content.decode()
    assert "Needs attention now" in page and 'href="/console/"' in page
    assert "Approvals waiting</a></th>\n        <td>1" in page
    assert "Escalated to people</a></th>\n        <td>0" in page
    assert "Reviews overdue</a></th>\n        <td>0" in page
    assert "category disk paused by alice: vendor bug" in page
    assert "Django administration" not in page


def test_a_long_reason_is_kept_whole_in_the_history_and_the_audit_trail(alice):
    # the admin takes up to 500 characters; PostgreSQL once refused past 100
    reason = "Raised after the storage review: " + "the vendor's firmware fix is in. " * 14
    policy = Policy.objects.get(name=DISK)
    policy.min_confidence_score = 0.9
    save_policy(policy, actor=alice, reason=reason.strip(), now=timezone.now())
    assert policy.history.latest().history_change_reason == reason.strip()
    assert (
        AuditEvent.objects.filter(action="policy.changed").latest("sequence").data["reason"]
        == reason.strip()
    )
