"""A compliance officer takes the record away in Chromium, and it verifies offline."""

import csv

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.usefixtures("trusting_policies"),
]


def signed_in(browser, live_asgi, user):
    client = Client()
    client.force_login(user)
    context = browser.new_context(accept_downloads=True)
    context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_asgi}]
    )
    return context.new_page()


def test_a_compliance_officer_exports_one_tickets_trail_as_csv_and_it_verifies(
    browser, live_asgi, agent, other_agent, dave, tmp_path, capsys
):
    # given two tickets on two hosts
    [wanted] = agent.post_metrics(agent.sample("firewall")).json()["results"]
    other_agent.post_metrics(other_agent.sample("cpu"))

    # when the compliance officer searches the audit trail for one ticket and exports it
    page = signed_in(browser, live_asgi, dave)
    page.goto(f"{live_asgi}/admin/governance/auditevent/")
    page.fill("#searchbar", wanted["ticket_id"])
    page.press("#searchbar", "Enter")
    page.wait_for_load_state()
    assert page.locator("#result_list tbody tr").count() >= 3
    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()
    # named by what it holds
    name = download.value.suggested_filename
    assert name.startswith(f"warden-audit_search-{wanted['ticket_id']}_until-")
    path = tmp_path / name
    download.value.save_as(path)

    # then the file holds that ticket's events only, each with its sequence and hashes,
    # and ends with Warden's signed proof
    with path.open(newline="") as handle:
        *rows, proof = csv.DictReader(handle)
    assert rows and {row["ticket"] for row in rows} == {wanted["ticket_id"]}
    assert all(row["sequence"] and len(row["hash"]) == 64 for row in rows)
    assert proof["sequence"] == "warden_audit_proof"

    # and it verifies offline, each record proven in the signed log, the gaps explained
    call_command("verify_audit", file=str(path))
    out = capsys.readouterr().out
    assert f"Filtered export verified: {len(rows)} records of" in out
    assert f"The export's filter: search {wanted['ticket_id']}." in out

    # while a copy with one summary changed does not
    tampered = tmp_path / "tampered.csv"
    tampered.write_text(path.read_text().replace("opened", "0pened", 1))
    with pytest.raises(CommandError):
        call_command("verify_audit", file=str(tampered))

    # and the officer, view-only, is offered no way to change anything
    page.goto(f"{live_asgi}/admin/governance/auditevent/")
    assert page.get_by_role("link", name="Add", exact=True).count() == 0
    assert page.locator("select[name=action] option[value=delete_selected]").count() == 0
    page.context.close()
