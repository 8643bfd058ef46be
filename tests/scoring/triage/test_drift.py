"""Drift of tickets' words: judged against the training-time figures, once enough tickets exist."""

from django.utils import timezone

from scoring.monitoring import OK, OUT_OF_DEPTH, TOO_FEW_SAMPLES, WATCH
from scoring.triage import drift
from scoring.triage.drift import text_drift, text_drift_level


def test_levels_follow_unknown_words_rising_and_similarity_falling():
    assert text_drift_level(0.06, 0.75, 0.05, 0.77) == OK
    assert text_drift_level(0.16, 0.75, 0.05, 0.77) == WATCH
    assert text_drift_level(0.05, 0.60, 0.05, 0.77) == WATCH
    assert text_drift_level(0.35, 0.75, 0.05, 0.77) == OUT_OF_DEPTH
    assert text_drift_level(0.05, 0.40, 0.05, 0.77) == OUT_OF_DEPTH


def test_a_few_tickets_are_not_judged(triage_model, make_ticket):
    make_ticket("Disk full on db-2", "/var at 98%")

    report = text_drift(triage_model, timezone.now())

    assert (report.tickets, report.level) == (1, TOO_FEW_SAMPLES)


def test_tickets_in_another_language_are_out_of_depth(triage_model, make_ticket, monkeypatch):
    monkeypatch.setattr(drift, "TEXT_DRIFT_MIN_TICKETS", 5)
    for n in range(5):
        make_ticket(
            f"Festplatte voll auf Rechner {n}", "Bitte dringend aufräumen, Zugriff verweigert"
        )

    report = text_drift(triage_model, timezone.now())

    assert report.level == OUT_OF_DEPTH
    assert report.unknown_token_share > report.reference_unknown_token_share + 0.25


def test_tickets_like_the_corpus_are_ok(triage_model, make_ticket, monkeypatch):
    monkeypatch.setattr(drift, "TEXT_DRIFT_MIN_TICKETS", 5)
    for n in range(5):
        make_ticket(f"Disk usage high on web-0{n}", "/var is at 95%, old temp files and logs")

    report = text_drift(triage_model, timezone.now())
    assert report.level == OK
