"""The text triage model: held-out figures, the classifier choice, and throughput.

1. Held-out figures of `manage.py train_triage_model` (stratified 25% of the corpus;
   threshold chosen on out-of-fold predictions of the rest): accuracy, macro-F1,
   calibration, unsafe suggestions, abstention.
2. The same on phrasings the model never saw: a quarter of each label's templates held out
   whole, which is closer to a ticket worded by someone new than a stratified split (whose
   held-out rows share templates with the training rows).
3. The classifier: the sigmoid-calibrated LinearSVC it uses against LogisticRegression,
   both on the same features and split.
4. Throughput in one process, on one thread: tickets per second through triage_texts and
   similar_incidents (against 1,000 resolved tickets), in batches of 100 and one by one,
   beside a bare pipeline.predict on the same texts (the floor).

Run: .venv/bin/python bench/bench_triage.py  (a throwaway SQLite database in a temp dir)
"""

import io
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SCRATCH = tempfile.mkdtemp(prefix="warden-bench-triage-")
os.environ["WARDEN_DATA_DIR"] = SCRATCH
os.environ.pop("DATABASE_URL", None)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.utils import timezone  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from remediation.actions import add_host  # noqa: E402
from remediation.models import Ticket  # noqa: E402
from scoring.models import TriageModelVersion  # noqa: E402
from scoring.serving import one_thread  # noqa: E402
from scoring.triage.corpus import CATALOGUE, TEMPLATES, load_corpus  # noqa: E402
from scoring.triage.model import (  # noqa: E402
    CATEGORY_THRESHOLD,
    RIVAL_SHARE,
    THRESHOLD_GRID,
    Rule,
    build_pipeline,
    choose_threshold,
    evaluate,
    label_of,
)
from scoring.triage.registry import serving_triage_model  # noqa: E402
from scoring.triage.serving import similar_incidents, triage_texts  # noqa: E402

RISK = {name: risk for name, (_, risk) in CATALOGUE.items()}
HEADLINE = (
    "category_accuracy",
    "runbook_accuracy",
    "macro_f1",
    "ece",
    "brier",
    "unsafe_without_abstention",
    "unsafe_suggestions",
    "abstention_rate",
    "accuracy_when_answered",
    "n_eval",
)
THROUGHPUT_TEXTS = 1000
RESOLVED_TICKETS = 1000
BATCH = 100


def show(title: str, metrics: dict) -> None:
    print(f"\n{title}")
    for key in HEADLINE:
        print(f"  {key:<28} {metrics[key]}")


def unseen_phrasings(classifier: Callable[[], object] | None = None) -> tuple[dict, float]:
    """Hold out every 4th template of each label whole; choose the threshold on
    out-of-fold predictions of the rest (as training does); evaluate on the held-out ones."""
    incidents = load_corpus()
    held = {
        f"{category}:{runbook}#{n}"
        for (category, runbook), templates in TEMPLATES.items()
        for n in range(len(templates))
        if n % 4 == 3
    }
    train = [i for i in incidents if i.phrasing not in held]
    test = [i for i in incidents if i.phrasing in held]
    train_x, train_y = [i.text for i in train], [label_of(i.category, i.runbook) for i in train]
    test_x, test_y = [i.text for i in test], [label_of(i.category, i.runbook) for i in test]

    def pipeline():
        p = build_pipeline(0)
        if classifier is not None:
            p.steps[-1] = ("classifier", classifier())
        return p

    with threadpool_limits(limits=1):
        oof = cross_val_predict(
            pipeline(),
            train_x,
            train_y,
            groups=[i.phrasing for i in train],
            cv=StratifiedGroupKFold(4, shuffle=True, random_state=0),
            method="predict_proba",
        )
        threshold, _ = choose_threshold(oof, sorted(set(train_y)), train_y, RISK)
        started = time.perf_counter()
        fitted = pipeline().fit(train_x, train_y)
        fit_seconds = time.perf_counter() - started
        rule = Rule(threshold, RIVAL_SHARE, CATEGORY_THRESHOLD, RISK)
        metrics = evaluate(fitted.predict_proba(test_x), fitted.classes_, test_y, rule)
    metrics["threshold"] = threshold
    return metrics, fit_seconds


def per_second(fn: Callable[[Sequence[str]], object], texts: list[str], batch: int) -> float:
    fn(texts[:batch])  # warm-up
    started = time.perf_counter()
    for start in range(0, len(texts), batch):
        fn(texts[start : start + batch])
    return len(texts) / (time.perf_counter() - started)


def main() -> None:
    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    call_command("train_triage_model", approve=True, stdout=io.StringIO())
    train_seconds = time.perf_counter() - started
    version = TriageModelVersion.objects.get(status="approved")
    show(
        f"1. Held-out figures (stratified 25% of the corpus; "
        f"threshold {version.thresholds['threshold']} chosen on out-of-fold predictions; "
        f"train_triage_model took {train_seconds:.1f} s)",
        version.metrics,
    )
    print(f"  drift reference: {version.text_reference}")

    svc, svc_fit = unseen_phrasings()
    show(
        f"2. Unseen phrasings (a quarter of each label's templates held out whole; "
        f"threshold {svc['threshold']} chosen on folds split by phrasing)",
        svc,
    )
    logreg, logreg_fit = unseen_phrasings(
        lambda: LogisticRegression(C=20.0, max_iter=2000, random_state=0)
    )
    print("\n3. Classifier on the unseen phrasings: calibrated LinearSVC vs LogisticRegression")
    print(f"  {'':<28} {'LinearSVC+sigmoid':>18} {'LogReg C=20':>12}")
    for key in ("runbook_accuracy", "ece", "brier", "unsafe_suggestions", "abstention_rate"):
        print(f"  {key:<28} {svc[key]:>18} {logreg[key]:>12}")
    print(f"  {'fit seconds':<28} {svc_fit:>18.2f} {logreg_fit:>12.2f}")

    incidents = load_corpus()
    texts = [incidents[i % len(incidents)].text for i in range(0, 7 * THROUGHPUT_TEXTS, 7)]
    host, _ = add_host("bench-host", now=timezone.now())
    Ticket.objects.bulk_create(
        Ticket(
            ticket_id=f"BENCH-{n}",
            title=incidents[n * 3 % len(incidents)].title,
            description=incidents[n * 3 % len(incidents)].description,
            category=incidents[n * 3 % len(incidents)].category,
            host=host,
            status="resolved",
        )
        for n in range(RESOLVED_TICKETS)
    )
    pipeline = serving_triage_model().pipeline
    similar_incidents(texts[:1])  # builds the index once (not timed)

    def bare(batch: Sequence[str]) -> object:
        with one_thread():
            return pipeline.predict(list(batch))

    print(f"\n4. Throughput, tickets per second ({THROUGHPUT_TEXTS} texts, one thread)")
    print(f"  {'':<44} {'batches of ' + str(BATCH):>14} {'one by one':>12}")
    rows = [
        ("bare pipeline.predict (floor)", bare),
        ("triage_texts", triage_texts),
        (f"similar_incidents ({RESOLVED_TICKETS} resolved tickets)", similar_incidents),
    ]
    measured = {}
    for name, fn in rows:
        batched = per_second(fn, texts, BATCH)
        single = per_second(fn, texts[:300], 1)
        measured[name] = (batched, single)
        print(f"  {name:<44} {batched:>14.0f} {single:>12.0f}")
    floor = measured["bare pipeline.predict (floor)"]
    triaged = measured["triage_texts"]
    print(
        f"  triage_texts / floor: {triaged[0] / floor[0]:.2f} batched, "
        f"{triaged[1] / floor[1]:.2f} one by one; batching gains x{triaged[0] / triaged[1]:.1f}"
    )
    print(f"\n(threshold grid {THRESHOLD_GRID[0]}..{THRESHOLD_GRID[-1]}; scratch dir {SCRATCH})")


if __name__ == "__main__":
    main()
