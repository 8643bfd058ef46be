"""Which similarity should a ticket need to join a pattern? Measured on the incident corpus.

The corpus (scoring/triage/incidents.jsonl) holds incident texts in people's words, each
with its category and the runbook that fixed it. Two tickets belong to the same pattern
when they share a category and a runbook ("" counts as its own: handled by hand).

The corpus is split in two halves, stratified by (category, runbook), with a fixed seed.
For each threshold 0.05-0.90 each half's tickets, shuffled, join patterns the way Warden
joins them (feedback.patterns: text vectors, the closest centroid of the ticket's
category at or above the threshold, or a new pattern), and every pair of tickets of one
category is judged: predicted same pattern vs same runbook. The threshold with the best
F0.5 on the first half is chosen (precision counts twice: a ticket wrongly joined borrows
the trust another problem earned; one wrongly kept apart only waits for a person), and
the second (held-out) half reports what it gives.

The corpus has words only, no readings: this measures the text side, the side that tells
two runbooks of one category apart (a metric ticket's readings name its category's metric).

Run: .venv/bin/python bench/bench_patterns.py
"""

import json
import os
import random
import sys
from collections import defaultdict
from itertools import combinations
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from feedback.patterns import (  # noqa: E402
    TEXT_SIDE,
    joined_centroid,
    text_vectors,
    vector_similarity,
)

CORPUS = ROOT / "scoring" / "triage" / "incidents.jsonl"
# 0.1-0.9, and finer where texts in people's words actually fall (cosines of 0.05-0.3).
THRESHOLDS = sorted({round(0.1 * step, 2) for step in range(1, 10)} | {0.05, 0.15, 0.25})
SEED = 21


def load() -> list[dict]:
    with CORPUS.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def split(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """Two halves with the same share of each (category, runbook)."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["category"], row["runbook"])].append(row)
    rng = random.Random(SEED)
    first, second = [], []
    for key in sorted(groups):
        members = groups[key][:]
        rng.shuffle(members)
        half = len(members) // 2
        first += members[:half]
        second += members[half:]
    return first, second


def cluster(rows: list[dict], vectors: list[dict], threshold: float) -> list[int]:
    """Each ticket's pattern number, joined one by one in `rows`' order, as Warden joins."""
    patterns: list[tuple[str, dict, int]] = []  # category, centroid, members
    assigned = []
    for row, vector in zip(rows, vectors, strict=True):
        sides = {TEXT_SIDE: vector}
        best, best_score = None, 0.0
        for number, (category, centroid, _) in enumerate(patterns):
            if category != row["category"]:
                continue
            score = vector_similarity(sides, centroid) or 0.0
            if score > best_score:
                best, best_score = number, score
        if best is None or best_score < threshold:
            patterns.append((row["category"], joined_centroid({}, sides, 0), 1))
            assigned.append(len(patterns) - 1)
        else:
            category, centroid, members = patterns[best]
            patterns[best] = (category, joined_centroid(centroid, sides, members), members + 1)
            assigned.append(best)
    return assigned


def pair_scores(rows: list[dict], assigned: list[int]) -> tuple[float, float, float]:
    """Pair precision, recall and F0.5 over the pairs of tickets of one category."""
    by_category: dict[str, list[int]] = defaultdict(list)
    for index, row in enumerate(rows):
        by_category[row["category"]].append(index)
    true_pos = predicted = actual = 0
    for members in by_category.values():
        for a, b in combinations(members, 2):
            same = rows[a]["runbook"] == rows[b]["runbook"]
            joined = assigned[a] == assigned[b]
            actual += same
            predicted += joined
            true_pos += same and joined
    precision = true_pos / predicted if predicted else 1.0
    recall = true_pos / actual if actual else 1.0
    beta2 = 0.25  # F0.5: precision weighs twice recall
    both = beta2 * precision + recall
    f_half = (1 + beta2) * precision * recall / both if both else 0.0
    return precision, recall, f_half


def measure(rows: list[dict]) -> dict[float, tuple[float, float, float, int]]:
    rows = rows[:]
    random.Random(SEED).shuffle(rows)
    vectors = text_vectors([f"{row['title']}\n{row['description']}" for row in rows])
    out = {}
    for threshold in THRESHOLDS:
        assigned = cluster(rows, vectors, threshold)
        out[threshold] = (*pair_scores(rows, assigned), len(set(assigned)))
    return out


def main() -> None:
    rows = load()
    tuning, held_out = split(rows)
    runbooks = len({(row["category"], row["runbook"]) for row in rows})
    print(f"corpus: {len(rows)} incidents, {runbooks} (category, runbook) kinds")
    print(f"tuning half {len(tuning)}, held-out half {len(held_out)}\n")
    tuned = measure(tuning)
    chosen = max(THRESHOLDS, key=lambda t: (tuned[t][2], t))
    held = measure(held_out)
    print("threshold  tuning P / R / F0.5 (patterns)   held-out P / R / F0.5 (patterns)")
    for t in THRESHOLDS:
        a, b = tuned[t], held[t]
        mark = "  <- chosen" if t == chosen else ""
        print(
            f"   {t:.2f}    {a[0]:.3f} / {a[1]:.3f} / {a[2]:.3f} ({a[3]:3d})"
            f"        {b[0]:.3f} / {b[1]:.3f} / {b[2]:.3f} ({b[3]:3d}){mark}"
        )
    p, r, f_half, patterns = held[chosen]
    print(
        f"\nchosen {chosen:.2f}: held-out pair precision {p:.3f}, recall {r:.3f}, "
        f"F0.5 {f_half:.3f}, {patterns} patterns"
    )


if __name__ == "__main__":
    main()
