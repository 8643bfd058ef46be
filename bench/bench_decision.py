"""Decision engine latency per ticket, beside the design's floor, in one process.

The floor is the cost-table row "predict_proba of 1 sample: LogisticRegression"
(0.17 ms on the reference machine): the cheapest model call a ticket pays
before the engine runs. The engine should cost a fraction of it.
Run: .venv/bin/python bench/bench_decision.py  (no database, no Django settings)
"""

import importlib
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from sklearn.linear_model import LogisticRegression

from governance.rules.defaults import DEFAULT_POLICIES, snapshot
from governance.rules.engine import decide
from governance.rules.facts import ModelOutput, RunbookFacts, Statistics, Switches, TicketFacts
from scoring.reliability import FeedbackFact, PatternFacts

DECISIONS = 20_000
PREDICTIONS = 5_000
DISTINCT_INPUTS = 500
FEATURES = 12  # about the width of scoring/features.py's matrix
SEED = 65

CATALOGUE = importlib.import_module("remediation.migrations.0002_seed_catalogue").RUNBOOKS
RUNBOOKS = {
    row["category"]: RunbookFacts(
        name=row["name"],
        action_type=row["action_type"],
        system=row["system"],
        reversible=row["reversible"],
        has_rollback_plan=bool(row.get("rollback_action")),
        commands=tuple(row["commands"]),
        touches=frozenset(row.get("touches", ())),
    )
    for row in CATALOGUE
}


def realistic_inputs(rng: random.Random) -> list[tuple]:
    """Arguments for decide(): the seeded categories, a live fleet, up to 200 feedback rows."""
    defaults = [snapshot(policy, version=i) for i, policy in enumerate(DEFAULT_POLICIES)]
    metric = [p for p in defaults if p.category in ("disk", "memory", "cpu")]
    # Mostly the agents' metric categories, as in the demo; some policies with an
    # overnight window in a real zone, so zoneinfo is on the path.
    overnight = [
        replace(p, allowed_hours_start=22, allowed_hours_end=6, timezone="Europe/Paris")
        for p in metric
    ]
    policies = metric * 4 + overnight + defaults
    start = datetime(2025, 3, 1, tzinfo=UTC)
    inputs = []
    for i in range(DISTINCT_INPUTS):
        policy = rng.choice(policies)
        runbook = RUNBOOKS.get(policy.category)
        feedback = tuple(
            FeedbackFact(
                rng.choice(("positive", "positive", "positive", "negative", "neutral")),
                rng.choice((None, 3, 4, 5)),
                rng.uniform(0, 180),
            )
            for _ in range(rng.choice((0, 5, 50, 200)))
        )
        total = rng.randint(0, 400)
        stats = Statistics(
            actions_last_hour=rng.randint(0, 10),
            hosts_under_remediation=rng.randint(0, 5),
            hosts_in_scope=200,
            host_under_remediation=rng.random() < 0.05,
            similar_resolved_tickets=rng.randint(0, 50),
            positive_feedback_rate=0.8 if feedback else None,
            feedback=feedback,
            category_resolved=rng.randint(0, total),
            category_total=total,
            pattern=PatternFacts(8, 0.9, 88.0, 0.92, rng.random(), True)
            if rng.random() < 0.3
            else None,
        )
        ticket = TicketFacts(
            ticket_id=f"INC-{i:06d}",
            category=policy.category,
            host=f"host-{rng.randint(1, 200):03d}",
            host_labels={"env": "prod"},
            enable_auto_remediation=True,
            occurrence_count=rng.randint(1, 20),
            security_severity=rng.choice(("none",) * 9 + ("high",)),
        )
        model = ModelOutput(
            severity=rng.choice((1, 1, 1, 2)),
            confidence=rng.triangular(0.6, 1.0, 0.95),
            explanation=(("disk_usage", 0.6), ("disk_usage_delta", 0.2)),
        )
        switches = Switches(("category cpu paused by alice: vendor bug",) if i % 50 == 0 else ())
        now = start + timedelta(minutes=rng.randint(0, 60 * 24 * 14))
        inputs.append((ticket, model, policy, runbook, switches, stats, now))
    return inputs


def per_call(fn: Callable[[int], object], calls: int) -> list[float]:
    """Seconds each of `calls` calls of fn(i) took."""
    timings = []
    clock = time.perf_counter
    for i in range(calls):
        started = clock()
        fn(i)
        timings.append(clock() - started)
    return timings


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(fraction * len(ordered)), len(ordered) - 1)]


def main() -> None:
    rng = random.Random(SEED)
    inputs = realistic_inputs(rng)

    def one_decision(i: int) -> object:
        return decide(*inputs[i % len(inputs)])

    outcomes = Counter(decide(*args).outcome for args in inputs)
    per_call(one_decision, 2_000)  # warm up caches (zoneinfo, regexes)
    decisions = per_call(one_decision, DECISIONS)
    started = time.perf_counter()
    for i in range(DECISIONS):
        one_decision(i)
    throughput = DECISIONS / (time.perf_counter() - started)

    data = np.random.default_rng(SEED)
    X = data.normal(size=(300, FEATURES))
    y = data.integers(0, 3, size=300)
    model = LogisticRegression(max_iter=500).fit(X, y)
    samples = data.normal(size=(PREDICTIONS, FEATURES))
    per_call(lambda i: model.predict_proba(samples[i : i + 1]), 500)  # warm up
    floor = per_call(lambda i: model.predict_proba(samples[i : i + 1]), PREDICTIONS)

    engine_median, floor_median = statistics.median(decisions), statistics.median(floor)
    print(
        f"decide() on {len(inputs)} realistic tickets, {DECISIONS:,} decisions "
        f"(outcomes: {', '.join(f'{k} {v}' for k, v in sorted(outcomes.items()))})"
    )
    print(f"{'':<36} {'median ms':>10} {'p95 ms':>8} {'per s':>9}")
    print(
        f"{'warden decide()':<36} {engine_median * 1e3:>10.3f} "
        f"{percentile(decisions, 0.95) * 1e3:>8.3f} {throughput:>9,.0f}"
    )
    print(
        f"{'floor: LogisticRegression 1 sample':<36} {floor_median * 1e3:>10.3f} "
        f"{percentile(floor, 0.95) * 1e3:>8.3f} {1 / statistics.mean(floor):>9,.0f}"
    )
    print(f"ratio decide() / floor (median): {engine_median / floor_median:.2f}")


if __name__ == "__main__":
    main()
