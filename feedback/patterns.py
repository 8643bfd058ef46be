"""Pattern learning: recurring kinds of problem, and how remediating them has gone.

A ticket's pattern is its category plus its key terms: the features that
pushed its first sample to its class, strongest first (the model's
explanation). A new ticket joins the closest pattern of its category when the
key terms overlap enough (Jaccard similarity), or starts a new one. Outcomes
and feedback accumulate on the pattern, and the seed's eligibility rule says
when it has earned auto-remediation. The decision engine reads it as the
reliability score's pattern-match factor.
"""

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings

from feedback.models import Pattern
from governance.rules.ceilings import ELIGIBLE_OCCURRENCES, ELIGIBLE_POSITIVE_RATE
from remediation.choices import VerifiedBy
from scoring.reliability import MIN_PATTERN_OCCURRENCES, PatternFacts

KEY_TERM_LIMIT = 3
# A contribution below this barely moved the prediction: not a key term.
MIN_KEY_TERM_CONTRIBUTION = 0.01
# Below this overlap two tickets are different problems.
MIN_SIMILARITY = 0.5
# The seed's eligibility rule for auto-remediation.
ELIGIBLE_RELIABILITY = 85.0
ELIGIBLE_AUTO_SUCCESS_RATE = 0.85
# A ticket another system opened is matched by the words of its title and description.
TEXT_TERM_LIMIT = 6
TEXT_WORD = re.compile(r"[a-z][a-z0-9_]{2,}")
STOP_WORDS = frozenset(
    {
        "the", "and", "for", "not", "with", "from", "this", "that", "are", "was", "were",
        "has", "have", "had", "but", "its", "into", "out", "after", "before", "when",
        "than", "then", "there", "their", "our", "your", "can", "cannot", "could", "would",
        "should", "also", "been", "being", "very", "some", "any", "all", "more", "most",
        "over", "under", "about", "again",
    }
)  # fmt: skip


@dataclass(frozen=True)
class PatternMatch:
    pattern: Pattern | None  # None: nothing close enough yet
    similarity: float
    key_terms: tuple[str, ...]


def key_terms(explanation: Iterable[Sequence]) -> tuple[str, ...]:
    """The features that pushed a sample to its class, strongest first."""
    terms = [
        str(name) for name, contribution in explanation if contribution >= MIN_KEY_TERM_CONTRIBUTION
    ]
    return tuple(terms[:KEY_TERM_LIMIT])


def signature(category: str, terms: Iterable[str]) -> str:
    return hashlib.sha256(f"{category}:{','.join(sorted(terms))}".encode()).hexdigest()


def similarity(a: Iterable[str], b: Iterable[str]) -> float:
    """Jaccard similarity of two sets of key terms; two empty sets are the same problem."""
    a, b = set(a), set(b)
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def closest(terms: Sequence[str], candidates: Iterable[Pattern]) -> tuple[Pattern | None, float]:
    """The candidate most similar to `terms` (ties: the most seen), if similar enough."""
    best, best_score = None, 0.0
    for pattern in candidates:
        score = similarity(terms, pattern.key_terms)
        if score > best_score or (
            best is not None
            and score == best_score
            and pattern.occurrence_count > best.occurrence_count
        ):
            best, best_score = pattern, score
    if best is None or best_score < MIN_SIMILARITY:
        return None, 0.0
    return best, best_score


def match(category: str, explanation: Iterable[Sequence]) -> PatternMatch:
    """The known pattern a new ticket of `category` with this explanation belongs to."""
    return match_terms(category, key_terms(explanation))


def text_terms(*texts: str) -> tuple[str, ...]:
    """The words of a ticket's title and description that name its problem, in order.

    Lower-cased, at least three letters, numbers and common words left out: "Web
    service not responding on port 8080" and "... port 443" share all their terms.
    """
    terms: list[str] = []
    for text in texts:
        for word in TEXT_WORD.findall(text.lower()):
            if word not in STOP_WORDS and word not in terms:
                terms.append(word)
    return tuple(terms[:TEXT_TERM_LIMIT])


def match_terms(category: str, terms: tuple[str, ...]) -> PatternMatch:
    """The known pattern of `category` closest to these key terms, if similar enough."""
    pattern, score = closest(terms, Pattern.objects.filter(category=category))
    return PatternMatch(pattern, score, terms)


def facts(found: PatternMatch) -> PatternFacts | None:
    """What the reliability score and the engine read from a match."""
    pattern = found.pattern
    if pattern is None:
        return None
    return PatternFacts(
        occurrence_count=pattern.occurrence_count,
        positive_feedback_rate=positive_feedback_rate(pattern),
        avg_reliability_score=pattern.avg_reliability,
        auto_remediation_success_rate=auto_remediation_success_rate(pattern),
        similarity=found.similarity,
        # Under today's thresholds: a global ceiling raised since the flag was stored counts.
        eligible=pattern.eligible_for_auto_remediation and is_eligible(pattern),
        known_good=is_known_good(pattern),
    )


def positive_feedback_rate(pattern: Pattern) -> float:
    given = pattern.positive_count + pattern.negative_count + pattern.neutral_count
    return pattern.positive_count / given if given else 0.0


def auto_remediation_success_rate(pattern: Pattern) -> float:
    attempts = pattern.auto_remediation_attempts
    return pattern.auto_remediation_successes / attempts if attempts else 0.0


def eligibility_thresholds() -> tuple[int, float]:
    """(occurrences, positive feedback rate) a pattern needs: the seed's, or higher where
    the global ceilings PATTERN_MIN_OCCURRENCES / PATTERN_MIN_POSITIVE_RATE raise them."""
    occurrences = settings.PATTERN_MIN_OCCURRENCES
    rate = settings.PATTERN_MIN_POSITIVE_RATE
    return (
        max(ELIGIBLE_OCCURRENCES, occurrences or 0),
        max(ELIGIBLE_POSITIVE_RATE, rate or 0.0),
    )


def is_eligible(pattern: Pattern) -> bool:
    """The seed's rule: seen often, liked, trusted, and its automatic fixes worked."""
    occurrences, rate = eligibility_thresholds()
    return (
        pattern.occurrence_count >= occurrences
        and positive_feedback_rate(pattern) >= rate
        and pattern.avg_reliability >= ELIGIBLE_RELIABILITY
        and auto_remediation_success_rate(pattern) >= ELIGIBLE_AUTO_SUCCESS_RATE
    )


def is_known_good(pattern: Pattern) -> bool:
    """The seed's step 6 "known good pattern": at least MIN_PATTERN_OCCURRENCES (3) of its
    tickets resolved, and people's feedback on it at least the eligibility rate positive.

    Full eligibility (is_eligible) also asks for automatic fixes that worked, which a
    pattern cannot show before it may act; this is what lets it act the first time.
    """
    _, rate = eligibility_thresholds()
    return (
        pattern.success_count >= MIN_PATTERN_OCCURRENCES
        and positive_feedback_rate(pattern) >= rate
    )


@dataclass(frozen=True)
class Occurrence:
    """A newly decided ticket to count on its pattern (record_occurrences)."""

    ticket: Any
    found: PatternMatch
    confidence: float
    reliability: float
    now: datetime


def record_occurrences(occurrences: Sequence[Occurrence]) -> None:
    """Count tickets on their patterns, locking each pattern once, in one order.

    A pattern is shared by every host with the same problem, so its row lock is
    held until the caller's commit: callers count last, just before the audit
    events, so a storm of new tickets waits on it for the shortest time.
    """
    for item in sorted(occurrences, key=lambda o: signature(o.ticket.category, o.found.key_terms)):
        record_occurrence(
            item.ticket,
            item.found,
            confidence=item.confidence,
            reliability=item.reliability,
            now=item.now,
        )


def record_occurrence(
    ticket,
    found: PatternMatch,
    *,
    confidence: float,
    reliability: float,
    now: datetime,
) -> Pattern:
    """Count a newly decided ticket on its pattern (creating the pattern if it is new)."""
    if found.pattern is None:
        pattern, _ = Pattern.objects.select_for_update().get_or_create(
            signature=signature(ticket.category, found.key_terms),
            defaults={
                "category": ticket.category,
                "key_terms": list(found.key_terms),
                "first_seen_at": now,
            },
        )
    else:
        pattern = Pattern.objects.select_for_update().get(pk=found.pattern.pk)
    n = pattern.occurrence_count + 1
    pattern.avg_confidence += (confidence - pattern.avg_confidence) / n
    pattern.avg_reliability += (reliability - pattern.avg_reliability) / n
    pattern.occurrence_count = n
    pattern.last_seen_at = max(pattern.last_seen_at, now)
    pattern.eligible_for_auto_remediation = is_eligible(pattern)
    pattern.save()
    ticket.pattern = pattern
    ticket.pattern_similarity = found.similarity if found.pattern is not None else 1.0
    # The system's bookkeeping, not a person's edit: no history row (the audit has it).
    type(ticket).objects.filter(pk=ticket.pk).update(
        pattern=pattern, pattern_similarity=ticket.pattern_similarity
    )
    return pattern


def record_outcome(ticket, *, resolved: bool) -> None:
    """A ticket closed, resolved or not: its success or failure counts on its pattern.

    Whether an automatic fix worked is counted apart, by record_automatic_attempt, when
    that execution passes or fails verification: a ticket resolved by hand after a
    failed automatic fix is a success for the pattern, not for its automation.
    """
    if ticket.pattern_id is None:
        return
    pattern = Pattern.objects.select_for_update().get(pk=ticket.pattern_id)
    if resolved:
        pattern.success_count += 1
    else:
        pattern.failure_count += 1
    pattern.eligible_for_auto_remediation = is_eligible(pattern)
    pattern.save()


def record_automatic_success(ticket, *, verified_by: str) -> None:
    """An automatic execution succeeded. It earns its pattern's automation credit only when
    the host's own fresh readings verified it: an alert's resolution (which whoever holds
    an alert sender's token controls) resolves the ticket, but neither raises nor lowers
    the pattern's automatic success rate."""
    if verified_by != VerifiedBy.READINGS:
        return
    record_automatic_attempt(ticket, succeeded=True)


def record_automatic_attempt(ticket, *, succeeded: bool) -> None:
    """An automatic execution ended: verified by the host's fresh readings (succeeded, see
    record_automatic_success) or failed (the agent reported failure, or verification did).
    Cancelled ones never ran."""
    if ticket.pattern_id is None:
        return
    pattern = Pattern.objects.select_for_update().get(pk=ticket.pattern_id)
    pattern.auto_remediation_attempts += 1
    pattern.auto_remediation_successes += int(succeeded)
    pattern.eligible_for_auto_remediation = is_eligible(pattern)
    pattern.save()


def record_feedback(ticket, feedback_type: str) -> None:
    """A person's verdict on a ticket counts on its pattern."""
    if ticket.pattern_id is None:
        return
    pattern = Pattern.objects.select_for_update().get(pk=ticket.pattern_id)
    field = {"positive": "positive_count", "negative": "negative_count"}.get(
        feedback_type, "neutral_count"
    )
    setattr(pattern, field, getattr(pattern, field) + 1)
    pattern.eligible_for_auto_remediation = is_eligible(pattern)
    pattern.save()
