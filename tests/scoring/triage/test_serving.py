"""What the rest of Warden asks the triage model: a batch of texts triaged, and the resolved
incidents most like each."""

import pytest

from scoring.triage import serving
from scoring.triage.registry import NoApprovedTriageModel, forget_serving_triage_model
from scoring.triage.serving import similar_incidents, ticket_text, triage_texts

NGINX = ("nginx 502 on shop-web", "nginx returns 502 Bad Gateway on every page, restart it")


def test_a_batch_is_triaged_in_order_with_the_serving_version(triage_model):
    texts = [
        ticket_text("Memory leak in payments-api on app01", "RSS grows every hour, OOM soon"),
        ticket_text("Brute force SSH from 185.3.4.5", "thousands of failed root logins"),
        ticket_text("RAID degraded on nfs-01", "mdadm says sdb failed"),
        ticket_text("hello", "please call me"),
    ]

    leak, attack, raid, vague = triage_texts(texts)

    assert (leak.category, leak.runbook) == ("memory", "restart-leaking-service")
    assert (attack.category, attack.runbook) == ("security", "block-address")
    assert leak.runbook_confidence >= triage_model.thresholds["threshold"]
    assert leak.alternatives[0] == ("restart-leaking-service", leak.runbook_confidence)
    # Storage has no runbook: the model is sure of the category and leaves the fix to people.
    assert (raid.category, raid.runbook, raid.unsure) == ("storage", "", False)
    assert (vague.runbook, vague.runbook_confidence, vague.unsure) == ("", 0.0, True)
    assert {t.model_version_id for t in (leak, attack, raid, vague)} == {triage_model.pk}


def test_nothing_is_triaged_without_an_approved_version(db):
    # a model an earlier test of this process approved is cached here until its refresh
    forget_serving_triage_model()
    serving.forget_incident_index()
    with pytest.raises(NoApprovedTriageModel) as refused:
        triage_texts(["disk full"])

    assert refused.value.status == 503
    assert triage_texts([]) == []


def test_similar_incidents_are_resolved_tickets_with_the_same_words(triage_model, make_ticket):
    resolved = make_ticket(*NGINX, category="server", fixed_by="restart-web-service")
    make_ticket(*NGINX, category="server", status="open")  # same words, still open
    make_ticket("Disk full on db-2", "/var at 98%", category="disk", status="closed")

    [found, unrelated] = similar_incidents(
        [
            ticket_text("502 Bad Gateway from nginx on web-7", "nginx answers 502 on every page"),
            ticket_text("qwerty zxcv", ""),
        ]
    )

    assert [(s.ticket_pk, s.ticket_id) for s in found] == [(resolved.pk, resolved.ticket_id)]
    assert found[0].similarity > 0.5
    assert unrelated == []


def test_a_ticket_resolved_later_is_found_after_the_refresh(triage_model, make_ticket, settings):
    settings.WARDEN_TRIAGE_INDEX_REFRESH_SECONDS = 3600
    clock = [0.0]
    serving._index.clock = lambda: clock[0]
    try:
        ticket = make_ticket(*NGINX, category="server", status="open")
        assert similar_incidents([ticket_text(*NGINX)]) == [[]]

        ticket.status = "resolved"
        ticket.save(update_fields=["status"])
        assert similar_incidents([ticket_text(*NGINX)]) == [[]]  # not asked again yet

        clock[0] += 3600
        [[found]] = similar_incidents([ticket_text(*NGINX)])
        assert found.ticket_pk == ticket.pk
        assert found.similarity == pytest.approx(1.0)
    finally:
        serving._index.clock = serving.time.monotonic


def test_limit_and_minimum_similarity_bound_the_answer(triage_model, make_ticket):
    for _ in range(4):
        make_ticket(*NGINX, category="server", fixed_by="restart-web-service")

    [three] = similar_incidents([ticket_text(*NGINX)])
    [one] = similar_incidents([ticket_text(*NGINX)], limit=1)
    [none] = similar_incidents([ticket_text("nginx", "")], min_similarity=0.99)

    assert len(three) == 3 and len(one) == 1 and none == []
    assert three[0].similarity >= three[1].similarity >= three[2].similarity
