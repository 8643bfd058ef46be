"""The metrics flow, top to bottom: an agent's batch in, its verdicts out.

agent samples -> feature matrix -> severity model (one batch) -> stored samples
(a resent one acknowledged, not stored again) -> fresh metrics verify running
remediations -> tickets opened or counted -> decision -> NO_ACTION recorded /
AUTO_HEAL execution queued / HITL_REQUIRED approval requested -> audit events,
all in one transaction per request, the audit chain's head locked last.

The batch's bookkeeping is remediation.sample_batches', the tickets and their decisions
remediation.metric_tickets', what a decision starts remediation.decision_outcomes'.
"""

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime

import numpy as np
from django.db import transaction

from feedback import patterns
from governance.audit.log import PendingEvent, append_events
from governance.rules.facts import NO_ACTION
from remediation.executions.verification import verify_with_samples
from remediation.metric_tickets import (
    CountedTicket,
    count_repeat,
    handle_problem,
    lock_open_tickets,
)
from remediation.models import Host
from remediation.sample_batches import (
    SampleVerdict,
    StoredSample,
    first_of_each_instant,
    lock_host,
    primary,
    problems_by_category,
    stored_verdicts,
)
from scoring.choices import Severity
from scoring.features import Reading, build_features
from scoring.inference import Classification, classify
from scoring.models import MetricSample
from scoring.registry import serving_model
from scoring.samples import assumed_skew, insert_samples, measured_skew, observed_times

# Each sample's answer per problem, by the reading's index: (category, decision, ticket id).
Answers = dict[int, list[tuple[str, str, str]]]


def ingest_samples(host: Host, readings: Sequence[Reading], now: datetime) -> list[SampleVerdict]:
    """Store, classify and act on one agent's batch; returns a verdict per reading, in order.

    `host` is the row as authentication read it: its newest sample gives the first
    reading's deltas. Classification runs before the transaction, so no lock waits
    for the model. A healthy batch is three statements: lock and mark the host (and
    look for executions to verify), insert the samples, commit.
    """
    model = serving_model()
    previous = host.newest_reading()
    features = build_features(readings, {host.name: previous} if previous else {})
    verdicts = classify(model.estimator, features, model.thresholds)
    first_copies = first_of_each_instant(readings)

    with transaction.atomic():
        samples, answers = store_and_act(
            host, readings, verdicts, first_copies, model.version_id, now, features
        )

    duplicates = (
        stored_verdicts(host, [r.taken_at for i, r in enumerate(readings) if i not in samples])
        if len(samples) < len(readings)
        else {}
    )
    return [
        sample_verdict(reading, verdict, answers.get(i, []))
        if i in samples
        else duplicates[reading.taken_at]
        for i, (reading, verdict) in enumerate(zip(readings, verdicts, strict=True))
    ]


def store_and_act(
    host: Host,
    readings: Sequence[Reading],
    verdicts: Sequence[Classification],
    first_copies: Mapping[datetime, int],
    model_version_id: int,
    now: datetime,
    features: np.ndarray,
) -> tuple[dict[int, StoredSample], Answers]:
    """Store the batch's new samples (with `features`, the rows the model classified) and
    act on the problems they show, in the caller's transaction; returns the stored samples
    and their answers, by the reading's index."""
    # Time is the server's: the batch measures the host's clock skew, and each reading's
    # time on the server's clock is its stamp corrected by it (scoring.samples).
    known_skew = host.clock_skew_seconds
    skew = measured_skew(max(reading.taken_at for reading in readings), now)
    observed = observed_times(
        [reading.taken_at for reading in readings], assumed_skew(known_skew, skew), now
    )
    # First: the host's row lock serialises this host's requests, so two batches
    # showing one new problem cannot both open a ticket, nor a resent batch slip in.
    locked = lock_host(host, readings, now, skew)
    new = [i for i in first_copies.values() if readings[i].taken_at not in locked.stored]
    events: list[PendingEvent] = []
    occurrences: list[patterns.Occurrence] = []
    problems = problems_by_category({i: verdicts[i] for i in new})
    # A repeat of a problem already ticketed is counted before the samples are
    # stored, so they are stored pointing at their ticket. Not while an execution
    # verifies: its outcome may close the ticket, so that waits for verification.
    counted = (
        {} if locked.verifying else count_repeats_at_once(host, problems, readings, verdicts, now)
    )
    ticket_of = {
        i: counted[c].pk
        for c, indexes in problems.items()
        if c in counted
        for i in indexes
        if primary(verdicts[i], c)
    }
    ids = insert_samples(
        host.pk,
        [readings[i] for i in new],
        [verdicts[i] for i in new],
        model_version_id,
        now,
        [ticket_of.get(i) for i in new],
        [observed[i] for i in new],
        features[new],
    )
    samples = {
        i: StoredSample(pk, readings[i], verdicts[i], now, observed[i])
        for i, pk in zip(new, ids, strict=True)
    }
    if locked.verifying:
        verify_with_samples(host, list(samples.values()), now, events)
    answers: Answers = defaultdict(list)
    for category, repeat in counted.items():
        for i in problems[category]:
            answers[i].append((category, repeat.outcome, repeat.ticket_id))
    others = {c: indexes for c, indexes in problems.items() if c not in counted}
    ticket_problems(host, others, samples, model_version_id, now, events, occurrences, answers)
    # Last, the rows every host shares: patterns, then the audit chain's head, each
    # locked only until the commit.
    patterns.record_occurrences(occurrences)
    append_events(events)
    return samples, answers


def count_repeats_at_once(
    host: Host,
    problems: Mapping[str, list[int]],
    readings: Sequence[Reading],
    verdicts: Sequence[Classification],
    now: datetime,
) -> dict[str, CountedTicket]:
    """The problems counted on the host's open ticket for them, which needs nothing more."""
    counted: dict[str, CountedTicket] = {}
    for category, indexes in problems.items():
        group = [(readings[i], verdicts[i]) for i in indexes]
        repeat = count_repeat(host, category, group, now)
        if repeat is not None:
            counted[category] = repeat
    return counted


def ticket_problems(
    host: Host,
    problems: Mapping[str, list[int]],
    samples: Mapping[int, StoredSample],
    model_version_id: int,
    now: datetime,
    events: list[PendingEvent],
    occurrences: list[patterns.Occurrence],
    answers: Answers,
) -> None:
    """Open, count on or decide again the host's ticket for each of `problems`, point the
    samples showing it most at the ticket, and add each sample's answer to `answers`."""
    open_tickets = lock_open_tickets(host, list(problems)) if problems else {}
    for category, indexes in problems.items():
        group = [samples[i] for i in indexes]
        ticket, outcome = handle_problem(
            host,
            category,
            group,
            open_tickets.get(category),
            model_version_id,
            now,
            events,
            occurrences,
        )
        pointed = [samples[i] for i in indexes if primary(samples[i].verdict, category)]
        # By instant too: on PostgreSQL that names the partitions to look in.
        MetricSample.objects.filter(
            host=host,
            taken_at__in=[sample.taken_at for sample in pointed],
            pk__in=[sample.pk for sample in pointed],
        ).update(ticket=ticket)
        for i in indexes:
            answers[i].append((category, outcome, ticket.ticket_id))


def sample_verdict(
    reading: Reading, verdict: Classification, answers: Sequence[tuple[str, str, str]]
) -> SampleVerdict:
    """A stored sample's answer: the decision on its strongest problem first."""
    problems = sorted(answers, key=lambda a: not primary(verdict, a[0]))
    _, outcome, ticket_id = problems[0] if problems else (None, NO_ACTION, None)
    return SampleVerdict(
        taken_at=reading.taken_at,
        severity=Severity(verdict.severity).label,
        confidence=round(verdict.confidence, 4),
        category=verdict.category,
        decision=outcome,
        ticket_id=ticket_id,
        explanation=verdict.explanation,
        problems=tuple(problems),
    )
