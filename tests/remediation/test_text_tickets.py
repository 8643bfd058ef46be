"""Tickets in people's words (the seed's API): stored `processing`, triaged in batches by a
django-q2 task, the host inferred from the text or named later by a person, then decided.

A stand-in triage model is used here (its calls counted); the real model's figures are
the triage model's own tests' and bench's.
"""

import csv
import io
from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.utils import timezone

from governance.console.panels import fleet_state, open_tickets
from governance.models import AuditEvent, Decision
from remediation import intake, tasks, triage
from remediation.actions import add_host, close_ticket
from remediation.models import Ticket
from scoring.triage.serving import SimilarIncident, TextTriage

SEED_BODY = {
    "ticket_id": "INC-12345",
    "title": "Service down",
    "description": "Web service not responding on port 8080",
    "category": "server",
    "enable_auto_remediation": True,
}


class StandInModel:
    """Answers like scoring.triage.serving, counting each call and its batch size."""

    def __init__(self, runbook: str = "restart-web-service", unsure: bool = False) -> None:
        self.runbook = runbook
        self.unsure = unsure
        self.batches: list[int] = []
        self.similar_batches: list[int] = []

    def triage_texts(self, texts: Any) -> list[TextTriage]:
        self.batches.append(len(texts))
        return [
            TextTriage(
                category="server",
                category_confidence=0.91,
                runbook="" if self.unsure else self.runbook,
                runbook_confidence=0.87,
                alternatives=(("restart-web-service", 0.87), ("kill-runaway-process", 0.08)),
                unsure=self.unsure,
                model_version_id=7,
                model_version=3,
            )
            for _ in texts
        ]

    def similar_incidents(self, texts: Any, **_: Any) -> list[list[SimilarIncident]]:
        self.similar_batches.append(len(texts))
        return [[SimilarIncident(ticket_pk=1, ticket_id="OPS-1", similarity=0.8123)] for _ in texts]


@pytest.fixture
def model(monkeypatch) -> StandInModel:
    stand_in = StandInModel()
    monkeypatch.setattr(triage, "triage_texts", stand_in.triage_texts)
    monkeypatch.setattr(triage, "similar_incidents", stand_in.similar_incidents)
    return stand_in


@pytest.fixture
def fleet(db) -> None:
    for name in ("prod-web-01", "prod-web-02", "db-01"):
        add_host(name, now=timezone.now())


def events_of(ticket_id: str) -> list[str]:
    return list(
        AuditEvent.objects.filter(ticket_id=ticket_id)
        .order_by("sequence")
        .values_list("action", flat=True)
    )


def test_the_seeds_body_is_accepted_as_processing_and_waits_for_a_host(api, alice, fleet, model):
    response = api(alice).post("/api/v1/tickets", SEED_BODY)

    assert response.status_code == 202, response.content
    assert response.json() == {
        "ticket_id": "INC-12345",
        "status": "processing",
        "auto_remediation_enabled": True,
        "confidence_score": 0.0,
        "reliability_score": None,
        "host": None,
        "opened_by": "alice",
        "links": {"self": "http://testserver/api/v1/tickets/INC-12345"},
    }
    # the text names no registered host: triaged, then it waits for a person, undecided
    ticket = Ticket.objects.get()
    assert (ticket.status, ticket.host) == ("escalated", None)
    assert events_of("INC-12345") == ["ticket.opened", "ticket.triaged", "ticket.escalated"]
    escalated = AuditEvent.objects.get(action="ticket.escalated")
    assert "no host named: a person names it" in escalated.summary
    assert not Decision.objects.exists()


def test_the_detail_shows_the_suggestion_and_the_similar_incidents(api, alice, fleet, model):
    api(alice).post("/api/v1/tickets", SEED_BODY)

    body = api(alice).get("/api/v1/tickets/INC-12345").json()

    assert body["host"] is None
    [action] = body["suggested_actions"]
    assert (action["runbook"], action["confidence"], action["allowed"]) == (
        "restart-web-service",
        0.87,
        False,  # not decided yet
    )
    assert action["system"] == "no host yet"
    assert body["similar_incidents"] == [
        {
            "ticket_id": "OPS-1",
            "similarity": 0.8123,
            "link": "http://testserver/api/v1/tickets/OPS-1",
        }
    ]
    assert body["triage"]["model"] == "v3" and body["triage"]["runbook"] == "restart-web-service"


def test_an_unsure_model_suggests_no_runbook(api, alice, fleet, model):
    model.unsure = True
    api(alice).post("/api/v1/tickets", SEED_BODY)

    body = api(alice).get("/api/v1/tickets/INC-12345").json()

    assert body["suggested_actions"] == []
    assert body["triage"]["unsure"] is True
    assert "unsure: a person picks" in AuditEvent.objects.get(action="ticket.triaged").summary


def test_a_text_naming_one_registered_host_is_decided_on_it(api, alice, fleet, model):
    body = {**SEED_BODY, "description": "Web service on PROD-WEB-01 not responding (port 8080)."}

    assert api(alice).post("/api/v1/tickets", body).status_code == 202

    ticket = Ticket.objects.get()
    assert ticket.host.name == "prod-web-01"
    assert ticket.triage["inferred_host"] == "prod-web-01"
    decision = Decision.objects.get(ticket=ticket)
    # no fresh reading vouches for it: a person approves the restart the model suggested
    assert decision.outcome == "HITL_REQUIRED"
    assert events_of("INC-12345")[:3] == ["ticket.opened", "ticket.triaged", "decision.made"]
    assert "named in its text" in AuditEvent.objects.get(action="ticket.triaged").summary


@pytest.mark.parametrize(
    "description",
    [
        "prod-web-01 and prod-web-02 both time out",  # several: a person says which
        "prod-web-011 does not answer",  # not a registered name, only one like it
        "prod-web-01.example.org is down",  # another name that starts like it
    ],
)
def test_a_text_naming_no_single_registered_host_waits(api, alice, fleet, model, description):
    api(alice).post("/api/v1/tickets", {**SEED_BODY, "description": description})

    ticket = Ticket.objects.get()
    assert (ticket.status, ticket.host) == ("escalated", None)
    assert not Decision.objects.exists()


def test_a_host_with_an_open_ticket_in_the_category_is_not_taken_from_the_text(
    api, alice, fleet, model
):
    api(alice).post("/api/v1/tickets", {**SEED_BODY, "host": "db-01"})
    body = {**SEED_BODY, "ticket_id": "INC-2", "description": "db-01 is down again"}

    api(alice).post("/api/v1/tickets", body)

    second = Ticket.objects.get(ticket_id="INC-2")
    assert (second.status, second.host) == ("escalated", None)
    assert (
        "has INC-12345 open in server"
        in AuditEvent.objects.get(action="ticket.escalated", ticket_id="INC-2").summary
    )


def test_a_person_names_the_host_over_the_api_and_the_ticket_is_decided(api, alice, fleet, model):
    api(alice).post("/api/v1/tickets", SEED_BODY)
    supervisor = api(alice)

    response = supervisor.post(
        "/api/v1/tickets/INC-12345/host", {"host": "prod-web-01", "reason": "its on-call said so"}
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["host"] == "prod-web-01"
    assert body["remediation_decision"]["outcome"] == "HITL_REQUIRED"
    assert body["status"] == "awaiting_approval"
    named = AuditEvent.objects.get(action="ticket.host_named")
    assert (named.actor, named.data["reason"]) == ("user:alice", "its on-call said so")
    assert events_of("INC-12345")[-3:-1] == ["ticket.host_named", "decision.made"]


@pytest.mark.parametrize(
    ("body", "status_code", "field"),
    [
        ({"host": "nowhere-9", "reason": "x"}, 400, "host"),
        ({"host": "prod-web-01"}, 400, "reason"),
    ],
)
def test_naming_a_host_refuses_what_it_cannot_do(
    api, alice, fleet, model, body, status_code, field
):
    api(alice).post("/api/v1/tickets", SEED_BODY)

    response = api(alice).post("/api/v1/tickets/INC-12345/host", body)

    assert response.status_code == status_code, response.content
    assert field in response.json()["error"]["fields"]
    assert Ticket.objects.get().host is None
    assert not AuditEvent.objects.filter(action="ticket.host_named").exists()


def test_a_ticket_with_a_host_cannot_be_given_another(api, alice, fleet, model):
    api(alice).post("/api/v1/tickets", {**SEED_BODY, "host": "db-01"})

    response = api(alice).post(
        "/api/v1/tickets/INC-12345/host", {"host": "prod-web-01", "reason": "x"}
    )

    assert response.status_code == 409
    assert Ticket.objects.get().host.name == "db-01"


def test_an_approver_may_not_name_a_host(api, alice, bob, fleet, model):
    api(alice).post("/api/v1/tickets", SEED_BODY)
    response = api(bob).post(
        "/api/v1/tickets/INC-12345/host", {"host": "prod-web-01", "reason": "x"}
    )
    assert response.status_code == 403


def test_a_person_names_the_host_in_the_admin(api, alice, client, fleet, model):
    api(alice).post("/api/v1/tickets", SEED_BODY)
    ticket = Ticket.objects.get()
    client.force_login(alice)
    story = client.get(f"/admin/remediation/ticket/{ticket.pk}/change/").content.decode()
    assert "no host yet" in story and "Name the host" in story
    assert "restart-web-service" in story and "OPS-1" in story  # the triage, on the story

    page = client.post(
        f"/admin/remediation/ticket/{ticket.pk}/name-host/",
        {"host": "prod-web-02", "reason": "the load balancer's logs point at it"},
        follow=True,
    )

    assert page.status_code == 200
    ticket.refresh_from_db()
    assert (ticket.host.name, ticket.status) == ("prod-web-02", "awaiting_approval")
    named = AuditEvent.objects.get(action="ticket.host_named")
    assert named.data == {"host": "prod-web-02", "reason": "the load balancer's logs point at it"}
    assert Decision.objects.filter(ticket=ticket).exists()


def test_a_category_left_out_is_read_from_the_text(api, alice, fleet, model):
    body = {k: v for k, v in SEED_BODY.items() if k != "category"}
    body["description"] = "prod-web-01 answers 502 on port 8080"

    assert api(alice).post("/api/v1/tickets", body).status_code == 202

    ticket = Ticket.objects.get()
    assert (ticket.category, ticket.triage["category_from"]) == ("server", "triage")
    assert Decision.objects.filter(ticket=ticket).exists()
    assert "category server read from its text" in (
        AuditEvent.objects.get(action="ticket.triaged").summary
    )


def test_without_a_category_a_person_picks_it_with_the_host(api, alice, fleet):
    # no triage model: nothing reads a category from the text
    body = {k: v for k, v in SEED_BODY.items() if k != "category"}
    api(alice).post("/api/v1/tickets", {**body, "host": "prod-web-01"})
    ticket = Ticket.objects.get()
    assert (ticket.status, ticket.category) == ("escalated", "")
    assert "a person picks one" in AuditEvent.objects.get(action="ticket.escalated").summary
    assert api(alice).get("/api/v1/tickets").status_code == 200  # reads without one

    missing = api(alice).post(
        "/api/v1/tickets/INC-12345/host", {"host": "prod-web-01", "reason": "x"}
    )
    assert missing.status_code == 400 and "category" in missing.json()["error"]["fields"]

    named = api(alice).post(
        "/api/v1/tickets/INC-12345/host",
        {"host": "prod-web-01", "category": "server", "reason": "the web tier"},
    )

    assert named.status_code == 200, named.content
    assert (named.json()["category"], named.json()["status"]) == ("server", "awaiting_approval")
    assert AuditEvent.objects.get(action="ticket.host_named").data["category"] == "server"


def test_a_ticket_decided_at_once_still_needs_its_category(fleet):
    # an alert's ticket is decided inline: no triage would read a category for it
    report = intake.ExternalTicket(
        ticket_id="AM-f1-1", host="db-01", category="", description="down", source="alert"
    )
    with pytest.raises(ValidationError) as refused:
        intake.open_external_ticket(report, user=None, now=timezone.now())
    assert "category" in refused.value.message_dict
    assert not Ticket.objects.exists()


def test_many_tickets_are_triaged_in_batches_one_model_call_each(
    api, alice, fleet, model, monkeypatch, settings
):
    # given six tickets stored while no worker ran
    monkeypatch.setattr(intake, "enqueue_triage", lambda: None)
    monkeypatch.setattr(triage, "enqueue_triage", lambda: None)
    for n in range(6):
        body = {**SEED_BODY, "ticket_id": f"INC-{n}", "description": f"site {n} is slow"}
        assert api(alice).post("/api/v1/tickets", body).status_code == 202
    assert Ticket.objects.filter(status="processing").count() == 6

    # when one task runs with batches of four, and then the next
    assert triage.triage_pending(timezone.now(), batch_size=4) == 4
    assert triage.triage_pending(timezone.now(), batch_size=4) == 2

    # then the model was asked once per batch, oldest tickets first
    assert model.batches == [4, 2] and model.similar_batches == [4, 2]
    assert not Ticket.objects.filter(status="processing").exists()
    first = AuditEvent.objects.filter(action="ticket.triaged").order_by("sequence")
    assert [e.ticket_id for e in first[:4]] == ["INC-0", "INC-1", "INC-2", "INC-3"]


def test_a_full_batch_asks_for_the_next_one(
    api, alice, fleet, model, monkeypatch, settings, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(intake, "enqueue_triage", lambda: None)
    for n in range(3):
        api(alice).post("/api/v1/tickets", {**SEED_BODY, "ticket_id": f"INC-{n}"})
    settings.WARDEN_TRIAGE_BATCH_SIZE = 2

    # the task's own re-enqueue (run at once here, after the commit) triages the rest
    with django_capture_on_commit_callbacks(execute=True):
        tasks.triage_tickets()

    assert model.batches == [2, 1]
    assert not Ticket.objects.filter(status="processing").exists()


def test_a_lost_triage_task_is_picked_up_by_the_sweeper(
    api, alice, fleet, model, monkeypatch, django_capture_on_commit_callbacks
):
    # given a ticket whose triage task was lost
    enqueue = intake.enqueue_triage
    monkeypatch.setattr(intake, "enqueue_triage", lambda: None)
    api(alice).post("/api/v1/tickets", {**SEED_BODY, "host": "prod-web-01"})
    ticket = Ticket.objects.get()
    assert ticket.status == "processing"
    monkeypatch.setattr(intake, "enqueue_triage", enqueue)

    # a young one is left to its task
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.sweep()["triage_waiting"] == 0
    assert Ticket.objects.get().status == "processing"

    # when the sweeper runs once it is older than the requeue delay
    Ticket.objects.filter(pk=ticket.pk).update(opened_at=timezone.now() - timedelta(minutes=2))
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.sweep()["triage_waiting"] == 1

    # then it is triaged and decided
    ticket.refresh_from_db()
    assert ticket.status == "awaiting_approval" and ticket.triaged_at is not None
    assert Decision.objects.filter(ticket=ticket).exists()


def test_a_ticket_whose_triage_fails_goes_to_people_and_the_batch_goes_on(
    api, alice, fleet, model, monkeypatch
):
    monkeypatch.setattr(intake, "enqueue_triage", lambda: None)
    api(alice).post("/api/v1/tickets", {**SEED_BODY, "ticket_id": "INC-1", "host": "db-01"})
    api(alice).post("/api/v1/tickets", {**SEED_BODY, "ticket_id": "INC-2"})
    real = triage.decide_reported_ticket

    def fails_on_db_01(ticket, *args, **kwargs):
        if ticket.host.name == "db-01":
            raise RuntimeError("runbook catalogue unreadable")
        return real(ticket, *args, **kwargs)

    monkeypatch.setattr(triage, "decide_reported_ticket", fails_on_db_01)

    assert triage.triage_pending(timezone.now()) == 2

    first, second = Ticket.objects.order_by("ticket_id")
    assert (first.status, second.status) == ("escalated", "escalated")
    why = AuditEvent.objects.get(action="ticket.escalated", ticket_id="INC-1").summary
    assert "its triage failed (runbook catalogue unreadable): a person decides" in why
    assert not Decision.objects.exists()
    assert second.triaged_at is not None  # the other ticket was triaged all the same


def test_without_an_approved_triage_model_tickets_are_still_decided(api, alice, fleet):
    # no stand-in: the serving interface has no approved model to answer with
    api(alice).post("/api/v1/tickets", {**SEED_BODY, "host": "prod-web-01"})

    ticket = Ticket.objects.get()
    assert ticket.triage["model"] == "no model"
    assert ticket.status == "awaiting_approval"
    assert Decision.objects.filter(ticket=ticket).exists()
    triaged = AuditEvent.objects.get(action="ticket.triaged")
    assert "no triage model approved" in triaged.summary
    assert api(alice).get("/api/v1/tickets/INC-12345").json()["similar_incidents"] == []


# --- A ticket with no host, everywhere tickets are read --------------------------------------


@pytest.fixture
def hostless(api, alice, fleet, model) -> Ticket:
    api(alice).post("/api/v1/tickets", SEED_BODY)
    return Ticket.objects.get()


def test_a_hostless_ticket_reads_in_the_list_and_its_filters(api, dave, hostless):
    reader = api(dave)
    [row] = reader.get("/api/v1/tickets").json()["results"]
    assert (row["ticket_id"], row["host"]) == ("INC-12345", None)
    assert reader.get("/api/v1/tickets", host__name="prod-web-01").json()["results"] == []
    assert reader.get("/api/v1/tickets", status="escalated").json()["count"] == 1


def test_a_hostless_ticket_shows_in_the_console_and_the_admin(client, alice, hostless):
    state = fleet_state(timezone.now())
    assert state.escalated == 1 and state.escalated_tickets == [hostless]
    assert open_tickets() == [hostless]
    client.force_login(alice)
    panels = client.get("/console/panels")
    assert panels.status_code == 200 and "no host yet" in panels.content.decode()
    changelist = client.get("/admin/remediation/ticket/")
    assert changelist.status_code == 200 and "no host yet" in changelist.content.decode()
    assert client.get("/admin/").status_code == 200  # the attention panel lists it


def test_a_hostless_ticket_has_evidence_and_exports(api, client, dave, alice, hostless, tmp_path):
    evidence = api(dave).get("/api/v1/tickets/INC-12345/evidence")
    assert evidence.status_code == 200
    assert evidence.json()["ticket"]["host"] is None
    assert evidence.json()["ticket"]["triage"]["runbook"] == "restart-web-service"
    client.force_login(alice)
    page = client.get("/tickets/INC-12345/evidence")
    assert page.status_code == 200 and "no host yet" in page.content.decode()

    path = tmp_path / "audit.csv"
    call_command("export_audit", "--format", "csv", "--output", str(path))
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert "ticket.triaged" in {row["event code"] for row in rows}


# --- With the real triage model ----------------------------------------------------------------


def test_a_ticket_triaged_by_the_real_model(api, alice, fleet, triage_model):
    # given a resolved incident told in other words on record
    api(alice).post(
        "/api/v1/tickets",
        {
            **SEED_BODY,
            "ticket_id": "OPS-1",
            "host": "prod-web-02",
            "title": "nginx crashed on prod-web-02",
            "description": "nginx.service failed after a config reload and the web site "
            "went down; a restart of the web service fixed it.",
        },
    )
    close_ticket(
        Ticket.objects.get(ticket_id="OPS-1"),
        actor=alice,
        reason="restarted by hand",
        now=timezone.now(),
        resolved=True,
    )

    # when a ticket in the same words arrives, naming no host
    api(alice).post(
        "/api/v1/tickets",
        {
            **SEED_BODY,
            "title": "[P2] nginx crashed",
            "description": "nginx.service failed after the config reload, web site down. "
            "Needs a restart of the web service.",
        },
    )

    # then the model's suggestion and the similar incident are on it, with the version
    body = api(alice).get("/api/v1/tickets/INC-12345").json()
    assert body["triage"]["model"] == f"v{triage_model.version}"
    assert (body["triage"]["runbook"], body["triage"]["unsure"]) == ("restart-web-service", False)
    [action] = body["suggested_actions"]
    assert action["runbook"] == "restart-web-service"
    assert action["confidence"] == body["triage"]["runbook_confidence"]
    assert [s["ticket_id"] for s in body["similar_incidents"]] == ["OPS-1"]
