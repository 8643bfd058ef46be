"""Supervisors pause, resume, roll back and decide differently from the live console in
Chromium, and every other open console sees it without a reload."""

import pytest
from django.utils import timezone

from governance.models import ApprovalRequest, AuditEvent, Pause
from remediation.actions import save_runbook
from remediation.models import Execution, Runbook
from tests.e2e.test_console import open_console

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

LIVE = 10_000  # a generous wait for what another console does to show here


def control_dialog(page, selector: str, reason: str):
    page.locator(selector).click()
    dialog = page.locator("#control-dialog")
    dialog.wait_for(state="visible")
    page.fill("#control-reason", reason)
    return dialog


def test_a_pause_and_its_resume_show_in_the_other_console(browser, live_asgi, agent, alice, bob):
    first = open_console(browser, live_asgi, alice)
    second = open_console(browser, live_asgi, bob)
    assert "Nothing is paused" in second.locator("#paused").inner_text()

    # when the supervisor pauses the disk category, the dialog says what it will change
    dialog = control_dialog(first, "button[data-control='pause']", "vendor incident on disks")
    first.select_option("#control-fields select[name=scope]", "category")
    first.select_option("#control-fields select[name=category]", "disk")
    preview = first.get_by_test_id("preview")
    preview.filter(has_text="Pauses automation for category disk on the one host").wait_for()
    assert "until someone resumes it" in preview.inner_text()
    first.click("#control-submit")
    dialog.wait_for(state="hidden")

    # then the second console shows it paused: what, by whom, why
    pause = Pause.objects.get()
    row = second.locator(f"#paused tr[data-pause='{pause.pk}']")
    row.wait_for(timeout=LIVE)
    assert "disk" in row.inner_text() and "alice" in row.inner_text()
    assert "vendor incident on disks" in row.inner_text()
    assert second.get_by_test_id("banner").get_attribute("data-level") == "stopped"

    # when the supervisor resumes it, naming it, it leaves the second console
    dialog = control_dialog(
        first, f"#paused tr[data-pause='{pause.pk}'] button[data-control='resume']", "over"
    )
    assert "category disk paused by alice" in first.locator("#control-context").inner_text()
    first.click("#control-submit")
    dialog.wait_for(state="hidden")
    row.wait_for(state="detached", timeout=LIVE)
    pause.refresh_from_db()
    assert pause.resumed_by == alice
    first.context.close()
    second.context.close()


def test_a_late_answer_to_an_earlier_choice_does_not_overwrite_the_preview(
    browser, live_asgi, agent, alice
):
    page = open_console(browser, live_asgi, alice)
    held = []  # the preview of "category, none chosen yet", answered only when the test says

    def hold_the_unchosen_category(route):
        if "scope=category&category=&" in route.request.url:
            held.append(route)
        else:
            route.continue_()

    page.route("**/console/pauses/preview*", hold_the_unchosen_category)
    control_dialog(page, "button[data-control='pause']", "vendor incident on disks")
    page.select_option("#control-fields select[name=scope]", "category")
    page.select_option("#control-fields select[name=category]", "disk")
    preview = page.get_by_test_id("preview")
    preview.filter(has_text="category disk").wait_for()

    # when the answer to the earlier choice comes back last
    assert len(held) == 1
    with page.expect_response(lambda response: response.url == held[0].request.url) as late:
        held[0].continue_()
    late.value.finished()
    page.wait_for_timeout(200)

    # then the preview still says what the dialog will do now
    assert "Pauses automation for category disk" in preview.inner_text()
    page.context.close()


def test_a_pause_without_a_category_is_refused_in_the_dialog(browser, live_asgi, alice):
    page = open_console(browser, live_asgi, alice)
    control_dialog(page, "button[data-control='pause']", "freeze")
    page.select_option("#control-fields select[name=scope]", "category")
    page.click("#control-submit")

    page.locator("#control-error").filter(has_text="category").wait_for()
    assert page.locator("#control-dialog").is_visible()
    assert not Pause.objects.exists()
    page.context.close()


def test_a_rollback_from_one_console_shows_in_the_other(
    browser, live_asgi, agent, alice, bob, trusting_policies
):
    # given a disk clean-up that ran and was verified
    agent.post_metrics(agent.sample("disk"))
    [action] = agent.take_actions()
    agent.report(action)
    agent.post_metrics(agent.sample())
    fix = Execution.objects.get(state="succeeded")
    first = open_console(browser, live_asgi, alice)
    second = open_console(browser, live_asgi, bob)
    assert second.locator(f"#fixes tr[data-execution='{fix.pk}'] button").count() == 0

    # when the supervisor rolls it back, having seen the rollback's command
    dialog = control_dialog(
        first, f"#fixes tr[data-execution='{fix.pk}'] button[data-control='rollback']", "oops"
    )
    assert " ".join(fix.rollback_argv) in first.locator("#control-context").inner_text()
    first.click("#control-submit")
    dialog.wait_for(state="hidden")

    # then the second console sees the fix being rolled back
    second.locator(f"#fixes tr[data-execution='{fix.pk}'][data-state='rollback_pending']").wait_for(
        timeout=LIVE
    )
    assert AuditEvent.objects.filter(action="execution.rollback_pending").exists()
    first.context.close()
    second.context.close()


def test_another_runbook_run_from_one_console_takes_the_ticket_out_of_the_others_queue(
    browser, live_asgi, agent, alice, bob
):
    # given a memory problem waiting for approval, and a second memory runbook
    [result] = agent.post_metrics(agent.sample("memory")).json()["results"]
    request = ApprovalRequest.objects.get(ticket__ticket_id=result["ticket_id"], status="pending")
    gentle = Runbook.objects.get(name="restart-leaking-service")
    gentle.pk, gentle.name, gentle.title = None, "restart-gently", "Restart, draining first"
    save_runbook(gentle, actor=None, reason="an alternative", now=timezone.now())
    first = open_console(browser, live_asgi, alice)
    second = open_console(browser, live_asgi, bob)
    second.locator(f"tr[data-approval='{request.pk}']").wait_for(timeout=LIVE)

    # when the supervisor decides it differently: the other runbook, its commands shown
    control_dialog(
        first,
        f"tr[data-approval='{request.pk}'] button[data-control='override']",
        "a restart drops sessions",
    )
    choices = first.get_by_test_id("override-choices")
    assert "restart-gently" in choices.inner_text()
    first.check("#control-context input[value='runbook:restart-gently']")
    first.click("#control-submit")
    first.locator("#control-dialog").wait_for(state="hidden")

    # then it leaves the second console's queue, and the other runbook is queued for it
    second.locator(f"tr[data-approval='{request.pk}']").wait_for(state="detached", timeout=LIVE)
    assert Execution.objects.get(ticket=request.ticket).runbook.name == "restart-gently"
    first.context.close()
    second.context.close()


def test_compliance_sees_no_controls_and_a_forged_post_is_refused(
    browser, live_asgi, agent, alice, dave
):
    [result] = agent.post_metrics(agent.sample("memory")).json()["results"]
    page = open_console(browser, live_asgi, dave)
    page.locator("#approvals tr[data-approval]").wait_for(timeout=LIVE)

    assert page.locator("button[data-control]").count() == 0
    # a request forged in the page, with the page's own CSRF token
    status = page.evaluate(
        """async (ticket) => {
            const csrf = JSON.parse(document.getElementById("csrf-token").textContent);
            const body = new URLSearchParams({scope: "all", reason: "forged"});
            const paused = await fetch("/console/pauses", {method: "POST", body,
                                       headers: {"X-CSRFToken": csrf}});
            const closed = await fetch(`/console/tickets/${ticket}/override`, {method: "POST",
                body: new URLSearchParams({decide: "close", reason: "forged"}),
                headers: {"X-CSRFToken": csrf}});
            return [paused.status, (await paused.json()).error.code, closed.status];
        }""",
        result["ticket_id"],
    )
    assert status == [403, "forbidden", 403]  # refused for who, not for the token
    assert not Pause.objects.exists()
    assert ApprovalRequest.objects.get(ticket__ticket_id=result["ticket_id"]).status == "pending"
    page.context.close()
