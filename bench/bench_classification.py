"""Classification throughput and latency, beside the design's floor, in one process.

The floor is the cost-table rows "predict_proba of 1 sample / 1,000 samples:
HistGradientBoosting" (1.4 / 8 ms on the reference machine): the bare model call
on the same batch. scoring.inference.classify adds one more predict_proba over
baseline copies of the non-healthy rows (for the explanations) and the Python
objects; the ratio says what that costs.
Run: .venv/bin/python bench/bench_classification.py  (no database, no Django settings)
"""

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from scoring.inference import PROBABILITY_FLOOR, classify
from scoring.synthetic import generate_dataset
from scoring.training import (
    DEFAULT_EVAL_HOSTS,
    DEFAULT_STEPS,
    DEFAULT_TRAIN_HOSTS,
    EVAL_SEED,
    TRAIN_SEED,
    train_severity_model,
)

BATCH_SIZES = (1, 100, 1_000)
# Calls timed per batch size: enough for a stable median, all within a minute.
RUNS = {1: 400, 100: 100, 1_000: 30}
SEED = 65


def timings(fn: Callable[[int], object], runs: int) -> list[float]:
    """Seconds each of `runs` calls of fn(i) took, after a few warm-up calls."""
    for i in range(min(runs, 20)):
        fn(i)
    clock = time.perf_counter
    result = []
    for i in range(runs):
        started = clock()
        fn(i)
        result.append(clock() - started)
    return result


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(fraction * len(ordered)), len(ordered) - 1)]


def main() -> None:
    started = time.perf_counter()
    train = generate_dataset(DEFAULT_TRAIN_HOSTS, DEFAULT_STEPS, TRAIN_SEED)
    held_out = generate_dataset(DEFAULT_EVAL_HOSTS, DEFAULT_STEPS, EVAL_SEED, label_noise=0.0)
    result = train_severity_model(train.X, train.y, held_out.X, held_out.y, seed=TRAIN_SEED)
    estimator, thresholds = result.estimator, result.thresholds
    metrics = result.metrics
    print(
        f"default model: {len(train.y):,} training samples, trained in "
        f"{time.perf_counter() - started:.1f} s (fit {metrics['fit_seconds']:.1f} s), "
        f"held-out macro-F1 {metrics['macro_f1']:.4f}"
    )
    print(
        f"decision: {result.params['decision_rule']} (probability floor "
        f"{thresholds[PROBABILITY_FLOOR]}), HITL_REQUIRED recall "
        f"{metrics['per_class']['HITL_REQUIRED']['recall']:.4f}, risky samples auto-healed "
        f"{metrics['confusion_matrix'][2][1]}, mean cost {metrics['mean_cost']:.4f}"
    )

    # Batches from the held-out fleet in a shuffled order: the realistic mix of healthy
    # and problem rows (the problem rows pay for the explanation call).
    rng = np.random.default_rng(SEED)
    X = held_out.X[rng.permutation(len(held_out.X))]
    problem_share = float((held_out.y != 0).mean())
    print(f"batches drawn from {len(X):,} held-out samples, {problem_share:.0%} of them problems")
    print(
        f"{'batch':>6} {'classify ms':>12} {'samples/s':>10} "
        f"{'predict_proba ms':>17} {'samples/s':>10} {'ratio':>6}"
    )

    single: dict[str, list[float]] = {}
    for size in BATCH_SIZES:
        runs = RUNS[size]
        batches = [X[(i * size) % (len(X) - size) :][:size] for i in range(runs)]
        ours = timings(lambda i, b=batches: classify(estimator, b[i], thresholds), runs)
        floor = timings(lambda i, b=batches: estimator.predict_proba(b[i]), runs)
        ours_median, floor_median = statistics.median(ours), statistics.median(floor)
        print(
            f"{size:>6,} {ours_median * 1e3:>12.3f} {size / ours_median:>10,.0f} "
            f"{floor_median * 1e3:>17.3f} {size / floor_median:>10,.0f} "
            f"{ours_median / floor_median:>6.2f}"
        )
        if size == 1:
            single = {"classify": ours, "predict_proba": floor}

    print(f"single-sample latency over {RUNS[1]} samples (median / p95 ms):")
    for name, values in single.items():
        print(
            f"  {name:<14} {statistics.median(values) * 1e3:.3f} / "
            f"{percentile(values, 0.95) * 1e3:.3f}"
        )
    ratio = statistics.median(single["classify"]) / statistics.median(single["predict_proba"])
    print(f"  ratio classify / predict_proba (median): {ratio:.2f}")

    # The worst single sample: a problem row, which pays for the explanation call too.
    problems = held_out.X[held_out.y != 0]
    worst = timings(
        lambda i: classify(estimator, problems[i % len(problems) :][:1], thresholds), RUNS[1]
    )
    print(
        f"  one problem sample: classify {statistics.median(worst) * 1e3:.3f} / "
        f"{percentile(worst, 0.95) * 1e3:.3f}"
    )


if __name__ == "__main__":
    main()
