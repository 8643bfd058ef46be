"""A batch's readings summarised per minute, merged into the host's minute rows.

What the console's sparklines, drift and a host's page read instead of raw samples
(scoring.models.SampleMinute). Kept with the samples, in their transaction and their
statement (scoring.samples): a batch is one host's, and usually one minute's, so it adds
one row or merges into one, and the summaries are exact at every commit, with no task to
lag behind and no watermark to miss a late transaction. Pure: no ORM, no clock.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

# The measured metrics kept per minute, as (column prefix, scoring.features index).
SUMMARISED = (("disk", 0), ("memory", 1), ("cpu", 2), ("dns", 3))


@dataclass(frozen=True)
class MinuteSummary:
    """One minute of a batch: lowest, highest and sum per metric, the worst class, and the
    minute's newest reading as the model saw it (its features, deltas included)."""

    minute: datetime
    samples: int
    lowest: tuple[float, ...]  # in SUMMARISED order
    highest: tuple[float, ...]
    sums: tuple[float, ...]
    worst_severity: int
    last_at: datetime
    last_severity: int
    last_features: tuple[float, ...]


def minute_of(instant: datetime) -> datetime:
    return instant.replace(second=0, microsecond=0)


def summarise(
    observed: Sequence[datetime], features: np.ndarray, severities: Sequence[int]
) -> list[MinuteSummary]:
    """The minutes of one host's readings, taken at `observed` (the server's clock), with
    their feature rows and classes; in order of minute."""
    by_minute: dict[datetime, list[int]] = {}
    for i, instant in enumerate(observed):
        by_minute.setdefault(minute_of(instant), []).append(i)
    summaries = []
    for minute, rows in sorted(by_minute.items()):
        values = features[rows][:, [index for _, index in SUMMARISED]]
        last = max(rows, key=lambda i: observed[i])
        summaries.append(
            MinuteSummary(
                minute=minute,
                samples=len(rows),
                lowest=tuple(float(v) for v in values.min(axis=0)),
                highest=tuple(float(v) for v in values.max(axis=0)),
                sums=tuple(float(v) for v in values.sum(axis=0)),
                worst_severity=max(int(severities[i]) for i in rows),
                last_at=observed[last],
                last_severity=int(severities[last]),
                last_features=tuple(float(v) for v in features[last]),
            )
        )
    return summaries
