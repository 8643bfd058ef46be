"""The text triage model: training, the abstention rule, and its held-out evaluation.

Pure: scikit-learn and numpy, no Django. scoring.triage.registry stores what this
produces; scoring.triage.serving applies it.

What it reads is a ticket's title and description (corpus.incident_text). Features: TF-IDF
over words (1-2 grams: "disk full", "port 443") beside TF-IDF over character n-grams
within words (char_wb, 3-5), which keeps typos, host names and inflections close
("uplloads", "rotated"/"rotation"). A linear classifier predicts one label per
(category, runbook) pair, "" runbook included: storage or a phishing report is a class of
its own whose answer is "a person picks". The category is the sum of its labels'
probabilities, so category and runbook never disagree and a ticket sure of its category
but torn between two of its runbooks still gets the category.

The classifier is a LinearSVC calibrated by CalibratedClassifierCV (sigmoid, 4 folds).
Measured against LogisticRegression (C 5, 20, 100) and isotonic calibration on phrasings
held out whole (bench/bench_triage.py): equal accuracy (0.87-0.88), but its probabilities
were the better calibrated (ECE 0.25 against 0.34 for LogisticRegression C=20), so at no
unsafe suggestion it abstains least; isotonic calibration was better calibrated still but
let unsafe suggestions through at every threshold. The fit costs ~1.5 s on one core.

Unsafe suggestions: a suggested runbook of a lower risk class than the right one
(read_only < safe_write < critical_write < "a person picks") would let a change run with
less oversight than it needs; suggesting nothing is never unsafe. The rule (decide):
suggest the top label's runbook only when its probability reaches `threshold` and the
labels of a higher risk class together hold less than `rival_share`; otherwise suggest
nothing (the ticket's category still stands when its own probability is high enough).
`threshold` is chosen on out-of-fold predictions of the training rows (never on the
held-out rows): the lowest on a grid with no unsafe suggestion there, so the held-out
figures report it honestly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from threadpoolctl import threadpool_limits

# scikit-learn is imported where a pipeline is built, fitted or read: importing it costs a
# process 0.8 s, and every process imports this module (its labels and rules) at start.
if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

# Risk classes in order; "a person picks" (no runbook) is above every runbook.
RISK_ORDER = ("read_only", "safe_write", "critical_write")
PERSON_RANK = len(RISK_ORDER)
LABEL_SEPARATOR = ":"

HELD_OUT_SHARE = 0.25
CV_FOLDS = 4
# Labels of a higher risk class holding this much probability withhold a suggestion.
RIVAL_SHARE = 0.15
# Never suggest a runbook the model gives less than even odds.
THRESHOLD_GRID = tuple(round(float(t), 2) for t in np.arange(0.50, 0.96, 0.05))
# A category is named when its labels together hold at least this much probability.
CATEGORY_THRESHOLD = 0.5
TOP_ALTERNATIVES = 3
ECE_BINS = 10

WORD_PARAMS: dict[str, Any] = {
    "analyzer": "word",
    "ngram_range": (1, 2),
    "sublinear_tf": True,
    "min_df": 2,
    "token_pattern": r"(?u)\b\w[\w.-]*\w\b|\b\w\b",
    "dtype": np.float64,
}
CHAR_PARAMS: dict[str, Any] = {
    "analyzer": "char_wb",
    "ngram_range": (3, 5),
    "sublinear_tf": True,
    "min_df": 2,
    "max_features": 60000,
    "dtype": np.float64,
}
SVC_PARAMS: dict[str, Any] = {"C": 0.3}
CALIBRATION_PARAMS: dict[str, Any] = {"method": "sigmoid", "cv": 4}


def label_of(category: str, runbook: str) -> str:
    return f"{category}{LABEL_SEPARATOR}{runbook}"


def split_label(label: str) -> tuple[str, str]:
    category, _, runbook = label.partition(LABEL_SEPARATOR)
    return category, runbook


def risk_rank(runbook: str, risk: Mapping[str, str]) -> int:
    """A runbook's risk class as a number; no runbook (a person picks) ranks highest."""
    if not runbook:
        return PERSON_RANK
    return RISK_ORDER.index(risk[runbook])


def build_pipeline(seed: int = 0) -> Pipeline:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion, Pipeline
    from sklearn.svm import LinearSVC

    return Pipeline(
        [
            (
                "features",
                FeatureUnion(
                    [
                        ("words", TfidfVectorizer(**WORD_PARAMS)),
                        ("chars", TfidfVectorizer(**CHAR_PARAMS)),
                    ]
                ),
            ),
            (
                "classifier",
                CalibratedClassifierCV(
                    LinearSVC(**SVC_PARAMS, random_state=seed), **CALIBRATION_PARAMS
                ),
            ),
        ]
    )


@dataclass(frozen=True)
class Rule:
    """The abstention rule a version records (TriageModelVersion.thresholds)."""

    threshold: float
    rival_share: float
    category_threshold: float
    risk: dict[str, str]  # runbook -> risk class, as the catalogue said at training

    def as_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "rival_share": self.rival_share,
            "category_threshold": self.category_threshold,
            "risk": dict(self.risk),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Rule:
        return cls(
            threshold=float(data["threshold"]),
            rival_share=float(data["rival_share"]),
            category_threshold=float(data["category_threshold"]),
            risk=dict(data["risk"]),
        )


@dataclass(frozen=True)
class Suggestion:
    category: str
    category_confidence: float
    runbook: str
    runbook_confidence: float
    alternatives: tuple[tuple[str, float], ...]
    unsure: bool


def decide(proba: np.ndarray, labels: Sequence[str], rule: Rule) -> list[Suggestion]:
    """Each row's suggestion under `rule` (see the module's docstring)."""
    proba = np.atleast_2d(np.asarray(proba, dtype=np.float64))
    parts = [split_label(label) for label in labels]
    categories = sorted({category for category, _ in parts})
    # (n_labels, n_categories) indicator: category probabilities in one product.
    member = np.array([[c == category for category in categories] for c, _ in parts], dtype=float)
    category_proba = proba @ member
    ranks = np.array([risk_rank(runbook, rule.risk) for _, runbook in parts])
    suggestions = []
    for row, category_row in zip(proba, category_proba, strict=True):
        order = np.argsort(-row, kind="stable")
        top = int(order[0])
        top_category, top_runbook = parts[top]
        best_category = int(np.argmax(category_row))
        category_confidence = float(category_row[best_category])
        category = (
            categories[best_category] if category_confidence >= rule.category_threshold else ""
        )
        rival = float(row[ranks > ranks[top]].sum())
        confident = row[top] >= rule.threshold and rival < rule.rival_share
        runbook = top_runbook if confident and top_category == category else ""
        # By runbook: every no-runbook label's share together is "" (a person picks).
        by_runbook: dict[str, float] = {}
        for i in order:
            by_runbook[parts[i][1]] = by_runbook.get(parts[i][1], 0.0) + float(row[i])
        alternatives = tuple(
            (name, round(share, 4))
            for name, share in sorted(by_runbook.items(), key=lambda item: -item[1])[
                :TOP_ALTERNATIVES
            ]
        )
        suggestions.append(
            Suggestion(
                category=category,
                category_confidence=round(category_confidence, 4),
                runbook=runbook,
                runbook_confidence=round(float(row[top]), 4) if runbook else 0.0,
                alternatives=alternatives,
                unsure=not confident or not category,
            )
        )
    return suggestions


def unsafe_count(
    suggested: Sequence[str], true_runbooks: Sequence[str], risk: Mapping[str, str]
) -> int:
    """Suggestions of a lower risk class than the right runbook; "" suggests nothing."""
    return sum(
        1
        for s, t in zip(suggested, true_runbooks, strict=True)
        if s and risk_rank(s, risk) < risk_rank(t, risk)
    )


def choose_threshold(
    proba: np.ndarray, labels: Sequence[str], y: Sequence[str], risk: Mapping[str, str]
) -> tuple[float, dict[str, Any]]:
    """The lowest threshold on THRESHOLD_GRID with no unsafe suggestion on (proba, y), and
    every higher one safe too; with the grid's unsafe counts and abstention rates."""
    true_runbooks = [split_label(label)[1] for label in y]
    scan = []
    for threshold in THRESHOLD_GRID:
        rule = Rule(threshold, RIVAL_SHARE, CATEGORY_THRESHOLD, dict(risk))
        suggestions = decide(proba, labels, rule)
        suggested = [s.runbook for s in suggestions]
        unsure = [s.unsure for s in suggestions]
        scan.append(
            {
                "threshold": threshold,
                "unsafe": unsafe_count(suggested, true_runbooks, risk),
                "abstention_rate": round(float(np.mean(unsure)), 4),
            }
        )
    chosen = THRESHOLD_GRID[-1]
    for entry in reversed(scan):
        if entry["unsafe"]:
            break
        chosen = entry["threshold"]
    return chosen, {"grid": scan}


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS
) -> float:
    """Weighted mean gap between confidence and accuracy over equal-width confidence bins."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.mean() * abs(confidence[mask].mean() - correct[mask].mean())
    return float(total)


def brier_score(proba: np.ndarray, labels: Sequence[str], y: Sequence[str]) -> float:
    """Multi-class Brier score: mean over rows of the squared distance to the one-hot truth."""
    index = {label: i for i, label in enumerate(labels)}
    truth = np.zeros_like(proba)
    for row, label in enumerate(y):
        if label in index:
            truth[row, index[label]] = 1.0
    return float(((proba - truth) ** 2).sum(axis=1).mean())


def evaluate(
    proba: np.ndarray, labels: Sequence[str], y: Sequence[str], rule: Rule
) -> dict[str, Any]:
    """Held-out figures of `proba` (rows in y's order) under `rule`."""
    from sklearn.metrics import f1_score

    labels = list(labels)
    predicted = [labels[i] for i in np.argmax(proba, axis=1)]
    true_parts = [split_label(label) for label in y]
    predicted_parts = [split_label(label) for label in predicted]
    suggestions = decide(proba, labels, rule)
    true_runbooks = [runbook for _, runbook in true_parts]
    suggested = [s.runbook for s in suggestions]
    answered = [s for s in suggestions if not s.unsure]
    answered_right = sum(
        1
        for s, (category, runbook) in zip(suggestions, true_parts, strict=True)
        if not s.unsure and s.runbook == runbook and s.category == category
    )
    confidence = proba.max(axis=1)
    correct = np.array([p == t for p, t in zip(predicted, y, strict=True)], dtype=float)
    per_label = {}
    for label in sorted(set(y)):
        rows = [i for i, t in enumerate(y) if t == label]
        per_label[label] = {
            "support": len(rows),
            "accuracy": round(float(np.mean([predicted[i] == label for i in rows])), 4),
            "abstained": round(float(np.mean([suggestions[i].unsure for i in rows])), 4),
        }
    return {
        "n_eval": len(y),
        "category_accuracy": round(
            float(
                np.mean([p[0] == t[0] for p, t in zip(predicted_parts, true_parts, strict=True)])
            ),
            4,
        ),
        "runbook_accuracy": round(
            float(
                np.mean([p[1] == t[1] for p, t in zip(predicted_parts, true_parts, strict=True)])
            ),
            4,
        ),
        "label_accuracy": round(float(correct.mean()), 4),
        "macro_f1": round(float(f1_score(y, predicted, labels=sorted(set(y)), average="macro")), 4),
        "ece": round(expected_calibration_error(confidence, correct), 4),
        "brier": round(brier_score(proba, labels, y), 4),
        # Without the rule: always the top label's runbook.
        "unsafe_without_abstention": unsafe_count(
            [p[1] for p in predicted_parts], true_runbooks, rule.risk
        ),
        "unsafe_suggestions": unsafe_count(suggested, true_runbooks, rule.risk),
        "abstention_rate": round(1 - len(answered) / max(len(y), 1), 4),
        "accuracy_when_answered": round(answered_right / max(len(answered), 1), 4),
        "per_label": per_label,
    }


def tfidf_vectors(pipeline: Pipeline, texts: Sequence[str]) -> Any:
    """Texts as the fitted features, each row of unit length: a dot product is a cosine."""
    from sklearn.preprocessing import normalize

    return normalize(pipeline.named_steps["features"].transform(list(texts)))


def word_vocabulary(pipeline: Pipeline) -> Mapping[str, int]:
    return pipeline.named_steps["features"].transformer_list[0][1].vocabulary_


def unknown_token_share(pipeline: Pipeline, texts: Sequence[str]) -> float:
    """Share of the texts' words the word vectorizer never saw in training."""
    words = pipeline.named_steps["features"].transformer_list[0][1]
    analyse = words.build_analyzer()
    vocabulary = words.vocabulary_
    tokens = [token for text in texts for token in analyse(text) if " " not in token]
    return float(np.mean([token not in vocabulary for token in tokens])) if tokens else 0.0


def best_similarities(
    pipeline: Pipeline,
    texts: Sequence[str],
    reference: Sequence[str],
    groups: Sequence[str] = (),
    reference_groups: Sequence[str] = (),
) -> np.ndarray:
    """Each text's cosine similarity to its nearest reference text; with groups, never to
    one of its own (non-empty) group: a phrasing is not compared with itself."""
    if not texts or not reference:
        return np.zeros(len(texts))
    product = (tfidf_vectors(pipeline, texts) @ tfidf_vectors(pipeline, reference).T).toarray()
    if groups and reference_groups:
        own = np.asarray(groups)[:, None]
        product[(own == np.asarray(reference_groups)[None, :]) & (own != "")] = 0.0
    return product.max(axis=1)


def similarity_reference(
    pipeline: Pipeline,
    texts: Sequence[str],
    y: Sequence[str],
    groups: Sequence[str],
    reference: Sequence[str],
    reference_y: Sequence[str],
    reference_groups: Sequence[str],
) -> dict[str, float]:
    """Held-out texts' best similarity to the training texts of other phrasings: overall
    (drift's reference), to a text of the same label, and to one of another label (where
    a similar-incidents threshold would separate the two)."""
    if not texts or not reference:
        return {}
    product = (tfidf_vectors(pipeline, texts) @ tfidf_vectors(pipeline, reference).T).toarray()
    own = np.asarray(groups)[:, None]
    product[(own == np.asarray(reference_groups)[None, :]) & (own != "")] = 0.0
    same_label = np.asarray(y)[:, None] == np.asarray(reference_y)[None, :]
    best = product.max(axis=1)
    best_same = np.where(same_label, product, 0.0).max(axis=1)
    best_other = np.where(same_label, 0.0, product).max(axis=1)

    def q(values: np.ndarray, percent: float) -> float:
        return round(float(np.percentile(values, percent)), 4)

    return {
        "mean_best_similarity": round(float(best.mean()), 4),
        "best_similarity_p10": q(best, 10),
        "same_label_best_p10": q(best_same, 10),
        "same_label_best_p50": q(best_same, 50),
        "other_label_best_p50": q(best_other, 50),
        "other_label_best_p90": q(best_other, 90),
    }


def compact_vocabularies(pipeline: Pipeline) -> Pipeline:
    """The vectorizers' vocabularies with plain int indices, not numpy ones: skops writes
    each numpy scalar as a file of its own, which made the artifact 13,000 files and its
    saving seven seconds; the transform is the same."""
    for _, vectorizer in pipeline.named_steps["features"].transformer_list:
        vectorizer.vocabulary_ = {str(term): int(i) for term, i in vectorizer.vocabulary_.items()}
    return pipeline


@dataclass
class TriageTrainingResult:
    pipeline: Pipeline
    rule: Rule
    metrics: dict
    params: dict
    # Drift's and similar-incidents' references: held-out figures against the training texts.
    text_reference: dict = field(default_factory=dict)


def train_triage_model(
    texts: Sequence[str],
    y: Sequence[str],
    risk: Mapping[str, str],
    *,
    extra_texts: Sequence[str] = (),
    extra_y: Sequence[str] = (),
    groups: Sequence[str] = (),
    seed: int = 0,
    held_out_share: float = HELD_OUT_SHARE,
    cv_folds: int = CV_FOLDS,
    threshold: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> TriageTrainingResult:
    """Fit on `texts` (labels label_of(category, runbook)) less a stratified held-out share,
    plus `extra_texts` (people's tickets: trained on, never held out), and evaluate.
    `groups` names each text's phrasing (corpus.Incident.phrasing): the drift reference then
    compares a held-out text with training texts of other phrasings only, as a new ticket's
    words would be.

    The threshold comes from `cv_folds`-fold out-of-fold predictions of the training rows,
    unless `threshold` is given (tests' quick fixture); cv_folds=0 without a threshold takes
    the grid's strictest.
    """
    say = progress or (lambda line: None)
    texts, y = list(texts), list(y)
    if len(texts) != len(y) or len(extra_texts) != len(extra_y):
        raise ValueError("texts and labels must be of equal length")
    unknown = sorted({split_label(label)[1] for label in [*y, *extra_y]} - set(risk) - {""})
    if unknown:
        raise ValueError(f"labels name runbooks with no risk class: {', '.join(unknown)}")
    if len(set(y)) < 2:
        raise ValueError("the corpus must hold at least two labels")
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict, train_test_split

    groups = list(groups) or [""] * len(texts)
    train_texts, eval_texts, train_y, eval_y, train_groups, eval_groups = train_test_split(
        texts, y, groups, test_size=held_out_share, stratify=y, random_state=seed
    )
    train_texts += list(extra_texts)
    train_y += list(extra_y)
    train_groups += [""] * len(extra_y)
    started = time.perf_counter()
    # One thread: the cores are shared with the web and the workers.
    with threadpool_limits(limits=1):
        if threshold is not None:
            scan: dict[str, Any] = {"grid": []}
        elif cv_folds:
            say(f"choosing the abstention threshold on {cv_folds}-fold out-of-fold predictions")
            # Folds split by phrasing: each out-of-fold text is worded in a way its fold's
            # model never saw, as a new ticket is. Stratified folds that share phrasings were
            # too optimistic: the threshold they chose let unsafe suggestions through on
            # unseen phrasings (bench/bench_triage.py).
            fold_groups = [g or f"row-{i}" for i, g in enumerate(train_groups)]
            folds = StratifiedGroupKFold(n_splits=cv_folds, shuffle=True, random_state=seed)
            oof = cross_val_predict(
                build_pipeline(seed),
                train_texts,
                train_y,
                groups=fold_groups,
                cv=folds,
                method="predict_proba",
            )
            oof_labels = sorted(set(train_y))
            threshold, scan = choose_threshold(oof, oof_labels, train_y, risk)
        else:
            threshold, scan = THRESHOLD_GRID[-1], {"grid": []}
        rule = Rule(threshold, RIVAL_SHARE, CATEGORY_THRESHOLD, dict(risk))
        say(f"fitting on {len(train_y)} texts ({len(extra_y)} from people's tickets)")
        pipeline = compact_vocabularies(build_pipeline(seed).fit(train_texts, train_y))
        fit_seconds = time.perf_counter() - started
        labels = list(pipeline.classes_)
        metrics = evaluate(pipeline.predict_proba(eval_texts), labels, eval_y, rule)
        similarity = similarity_reference(
            pipeline, eval_texts, eval_y, eval_groups, train_texts, train_y, train_groups
        )
    metrics.update(
        {"n_train": len(train_y), "n_history": len(extra_y), "fit_seconds": round(fit_seconds, 3)}
    )
    metrics["threshold_scan"] = scan["grid"]
    say(
        f"held out {metrics['n_eval']}: category accuracy {metrics['category_accuracy']:.4f}, "
        f"runbook accuracy {metrics['runbook_accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}, "
        f"ECE {metrics['ece']:.4f}, unsafe {metrics['unsafe_suggestions']} "
        f"(threshold {threshold}, abstains on {metrics['abstention_rate']:.1%})"
    )
    return TriageTrainingResult(
        pipeline=pipeline,
        rule=rule,
        metrics=metrics,
        params={
            "algorithm": "TF-IDF words 1-2 + char_wb 3-5, LinearSVC, sigmoid-calibrated",
            "word": {k: v for k, v in WORD_PARAMS.items() if k != "dtype"},
            "chars": {k: v for k, v in CHAR_PARAMS.items() if k != "dtype"},
            "classifier": {"LinearSVC": SVC_PARAMS, "calibration": CALIBRATION_PARAMS},
            "seed": seed,
            "held_out_share": held_out_share,
            "cv_folds": cv_folds,
            "labels": labels,
        },
        text_reference={
            "unknown_token_share": round(unknown_token_share(pipeline, eval_texts), 4),
            **similarity,
        },
    )
