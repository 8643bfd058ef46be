"""The triage model's training and its abstention rule: reproducible, and never a runbook of
a lower risk class than the right one."""

import numpy as np
import pytest

from scoring.triage.corpus import CATALOGUE, load_corpus
from scoring.triage.model import (
    Rule,
    decide,
    expected_calibration_error,
    label_of,
    train_triage_model,
    unsafe_count,
)

RISK = {name: risk for name, (_, risk) in CATALOGUE.items()}
LABELS = [
    label_of("dns", "restart-dns-resolver"),
    label_of("dns", "switch-dns-resolver"),
    label_of("storage", ""),
]
RULE = Rule(threshold=0.5, rival_share=0.15, category_threshold=0.5, risk=RISK)


@pytest.fixture(scope="module")
def full_training():
    """What `train_triage_model` does by default: threshold chosen on out-of-fold predictions."""
    incidents = load_corpus()
    return train_triage_model(
        [i.text for i in incidents], [label_of(i.category, i.runbook) for i in incidents], RISK
    )


def test_the_held_out_set_gets_no_unsafe_suggestion(full_training):
    metrics = full_training.metrics

    assert metrics["unsafe_suggestions"] == 0
    assert metrics["n_eval"] > 300
    assert metrics["category_accuracy"] > 0.95
    assert metrics["runbook_accuracy"] > 0.9
    assert 0 < metrics["abstention_rate"] < 0.2
    assert 0 <= metrics["ece"] < 0.1
    # The threshold was chosen where the out-of-fold predictions had no unsafe suggestion.
    chosen = [
        e for e in metrics["threshold_scan"] if e["threshold"] >= full_training.rule.threshold
    ]
    assert chosen and all(e["unsafe"] == 0 for e in chosen)


def test_training_is_reproducible(trained_triage_model):
    incidents = load_corpus()[::7]
    texts = [i.text for i in incidents]
    again = train_triage_model(
        [i.text for i in load_corpus()],
        [label_of(i.category, i.runbook) for i in load_corpus()],
        RISK,
        threshold=trained_triage_model.rule.threshold,
    )

    timing = {"fit_seconds"}
    assert {k: v for k, v in again.metrics.items() if k not in timing} == {
        k: v for k, v in trained_triage_model.metrics.items() if k not in timing
    }
    np.testing.assert_array_equal(
        again.pipeline.predict_proba(texts), trained_triage_model.pipeline.predict_proba(texts)
    )


def test_a_clear_ticket_gets_its_runbook_and_gibberish_gets_a_person(trained_triage_model):
    pipeline, rule = trained_triage_model.pipeline, trained_triage_model.rule
    texts = [
        "Disk almost full on web-01: /var at 97%, old temp files and logs",
        "Primary DNS server 10.0.0.2 down, every host fails lookups, switch to standby",
        "qwerty zxcv lorem",
    ]

    disk, dns, gibberish = decide(pipeline.predict_proba(texts), pipeline.classes_, rule)

    assert (disk.category, disk.runbook, disk.unsure) == (
        "disk",
        "clean-temp-and-rotate-logs",
        False,
    )
    assert (dns.category, dns.runbook) == ("dns", "switch-dns-resolver")
    assert (gibberish.runbook, gibberish.unsure) == ("", True)


def test_a_riskier_rival_withholds_the_safer_suggestion():
    # restart (safe_write) on top, but switch (critical_write) holds 20%: a person picks.
    [torn] = decide(np.array([[0.78, 0.20, 0.02]]), LABELS, RULE)
    [sure] = decide(np.array([[0.90, 0.08, 0.02]]), LABELS, RULE)

    assert (torn.category, torn.runbook, torn.unsure) == ("dns", "", True)
    assert (sure.runbook, sure.unsure) == ("restart-dns-resolver", False)


def test_a_low_top_probability_suggests_nothing_but_keeps_a_sure_category():
    [low] = decide(
        np.array([[0.45, 0.05, 0.50]]),
        [LABELS[0], LABELS[0].replace("restart", "x"), LABELS[2]],
        Rule(0.6, 1.0, 0.5, {**RISK, "x-dns-resolver": "safe_write"}),
    )
    [no_runbook] = decide(np.array([[0.01, 0.01, 0.98]]), LABELS, RULE)

    assert (low.category, low.runbook, low.unsure) == ("dns", "", True)
    assert (no_runbook.category, no_runbook.runbook, no_runbook.unsure) == ("storage", "", False)


def test_unsafe_means_a_lower_risk_class_and_suggesting_nothing_never_is():
    assert unsafe_count(["restart-dns-resolver"], ["switch-dns-resolver"], RISK) == 1
    assert unsafe_count(["switch-dns-resolver"], ["restart-dns-resolver"], RISK) == 0
    assert unsafe_count(["rotate-logs"], [""], RISK) == 1  # a person should have picked
    assert unsafe_count([""], ["switch-dns-resolver"], RISK) == 0


def test_calibration_error_is_zero_when_confidence_matches_accuracy():
    confidence = np.array([0.8] * 10)
    correct = np.array([1.0] * 8 + [0.0] * 2)

    assert expected_calibration_error(confidence, correct) == pytest.approx(0.0)
    assert expected_calibration_error(confidence, np.ones(10)) == pytest.approx(0.2)


def test_a_label_naming_an_unknown_runbook_is_refused():
    with pytest.raises(ValueError, match="no risk class: made-up"):
        train_triage_model(["a", "b"], ["disk:made-up", "cache:"], RISK)
