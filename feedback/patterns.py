"""Pattern learning: recurring kinds of problem, and how remediating them has gone.

A new ticket joins the pattern of its category whose words and readings it is
closest to, or starts a new one. Each ticket is read as two unit vectors:

- its text (title and description): a stateless scikit-learn HashingVectorizer over
  words and word pairs and over character n-grams inside words, each l2-normalised,
  so it needs no fitted model and works before any triage model exists;
- its readings: the features that pushed its sample to its class (the model's
  explanation), weighed by how much each did.

A pattern keeps the mean of its members' vectors (its centroid, a compact sparse
JSON map). The similarity of a ticket to a pattern is the cosine on each side both
have, combined by TEXT_WEIGHT and READINGS_WEIGHT (one side only: that side's cosine);
a ticket joins the closest pattern at or above MIN_SIMILARITY. Key terms (the
strongest features, or the text's words) stay on the pattern for people to read.

Outcomes and feedback accumulate on the pattern, and the seed's eligibility rule says
when it has earned auto-remediation. The decision engine reads it as the
reliability score's pattern-match factor.
"""

import hashlib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from django.conf import settings

from feedback.models import Pattern
from governance.rules.ceilings import ELIGIBLE_OCCURRENCES, ELIGIBLE_POSITIVE_RATE
from remediation.choices import VerifiedBy
from scoring.reliability import MIN_PATTERN_OCCURRENCES, PatternFacts

if TYPE_CHECKING:
    from sklearn.feature_extraction.text import HashingVectorizer

KEY_TERM_LIMIT = 3
# A contribution below this barely moved the prediction: not a key term.
MIN_KEY_TERM_CONTRIBUTION = 0.01
# Below this similarity a ticket is a different problem from every known pattern. Chosen
# by bench/bench_patterns.py on the incident corpus (scoring/triage/incidents.jsonl):
# split in half, tickets of each category joined one by one, "same pattern" judged by
# "same runbook", best F0.5 on the tuning half (0.683, beside 0.681 at 0.10). Held
# out, 0.15 gave pair precision 0.68 and recall 0.53 (49 patterns for 15 runbook
# kinds); 0.30 gave 0.93 and 0.15, 0.50 gave 1.00 and 0.08 (docs/design.md's table).
MIN_SIMILARITY = 0.15
# A pattern learned before centroids were kept is matched by key-term overlap (Jaccard).
MIN_TERM_OVERLAP = 0.5
# How much each side counts when ticket and pattern both have it (they sum to 1). The
# readings name the metric that is wrong; the words say why (logs or temp files, a leak
# or a cache), which is what tells two runbooks of one category apart.
TEXT_WEIGHT = 0.6
READINGS_WEIGHT = 0.4
# Hashed feature space of each text vectorizer; a centroid keeps its heaviest entries.
TEXT_FEATURES = 2**18
CENTROID_SIZE = 400
TEXT_SIDE = "text"
READINGS_SIDE = "readings"
DIGITS = re.compile(r"[0-9]+")
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


Vector = dict[str, float]  # sparse: feature -> weight
TicketVectors = dict[str, Vector]  # side (TEXT_SIDE, READINGS_SIDE) -> unit vector


@dataclass(frozen=True)
class PatternMatch:
    pattern: Pattern | None  # None: nothing close enough yet
    similarity: float
    key_terms: tuple[str, ...]
    vectors: TicketVectors = field(default_factory=dict)  # the ticket's, to join the centroid


@cache
def _text_vectorizers() -> tuple["HashingVectorizer", "HashingVectorizer"]:
    """Stateless: the same text always gives the same vector, with nothing to fit."""
    # Imported here: scikit-learn costs every process 0.8 s to import (scipy.stats with
    # it), and most, every manage.py command among them, never match a ticket's text.
    from sklearn.feature_extraction.text import HashingVectorizer

    def common(text: str) -> str:
        # "97%" and "88%" are the same words about the same problem.
        return DIGITS.sub("0", text.lower())

    words = HashingVectorizer(
        analyzer="word",
        ngram_range=(1, 2),
        preprocessor=common,
        stop_words=sorted(STOP_WORDS),
        n_features=TEXT_FEATURES,
        alternate_sign=False,
        norm="l2",
    )
    chars = HashingVectorizer(
        analyzer="char_wb",
        ngram_range=(3, 5),
        preprocessor=common,
        n_features=TEXT_FEATURES,
        alternate_sign=False,
        norm="l2",
    )
    return words, chars


def text_vectors(texts: Sequence[str]) -> list[Vector]:
    """Each text as one l2-normalised sparse vector: its words and its character n-grams,
    each side normalised and weighed equally. An empty text gives an empty vector."""
    words, chars = _text_vectorizers()
    half = math.sqrt(0.5)
    out: list[Vector] = []
    for w_row, c_row in zip(words.transform(texts), chars.transform(texts), strict=True):
        vector = {f"w{i}": v * half for i, v in zip(w_row.indices, w_row.data, strict=True)}
        vector.update({f"c{i}": v * half for i, v in zip(c_row.indices, c_row.data, strict=True)})
        out.append(_unit(vector))
    return out


def readings_vector(explanation: Iterable[Sequence]) -> Vector:
    """The features that pushed the sample to its class, weighed by how much, as a unit
    vector (empty when nothing did)."""
    return _unit(
        {
            str(name): float(contribution)
            for name, contribution in explanation
            if float(contribution) >= MIN_KEY_TERM_CONTRIBUTION
        }
    )


def ticket_vectors(text: str, explanation: Iterable[Sequence] = ()) -> TicketVectors:
    """A ticket's sides: its words, and its readings when a sample explains it."""
    vectors = {TEXT_SIDE: text_vectors([text])[0], READINGS_SIDE: readings_vector(explanation)}
    return {side: vector for side, vector in vectors.items() if vector}


def cosine(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    if len(b) < len(a):
        a, b = b, a
    dot = sum(value * b.get(key, 0.0) for key, value in a.items())
    norms = math.sqrt(sum(v * v for v in a.values())) * math.sqrt(sum(v * v for v in b.values()))
    return dot / norms if norms else 0.0


def vector_similarity(ticket: Mapping[str, Vector], pattern: Mapping[str, Vector]) -> float | None:
    """The weighted cosine over the sides both have, or None when they share no side."""
    weights = {TEXT_SIDE: TEXT_WEIGHT, READINGS_SIDE: READINGS_WEIGHT}
    shared = [side for side in weights if ticket.get(side) and pattern.get(side)]
    if not shared:
        return None
    total = sum(weights[side] for side in shared)
    return sum(weights[side] * cosine(ticket[side], pattern[side]) for side in shared) / total


def joined_centroid(
    centroid: Mapping[str, Vector], vectors: Mapping[str, Vector], members: int
) -> dict[str, Vector]:
    """The mean of `members` tickets' vectors with one more ticket's, per side; each side
    keeps its CENTROID_SIZE heaviest entries, rounded, so the row stays small. `members`
    counts the tickets already in `centroid`."""
    out: dict[str, Vector] = {}
    for side in {*centroid, *vectors}:
        old, new = centroid.get(side, {}), vectors.get(side, {})
        mean = {
            key: (old.get(key, 0.0) * members + new.get(key, 0.0)) / (members + 1)
            for key in {*old, *new}
        }
        # Ties broken by name: the same tickets give the same centroid in any process.
        heaviest = sorted(mean.items(), key=lambda item: (-item[1], item[0]))[:CENTROID_SIZE]
        out[side] = {key: round(value, 5) for key, value in heaviest if value > 0}
    return out


def _unit(vector: Mapping[str, float]) -> Vector:
    norm = math.sqrt(sum(v * v for v in vector.values()))
    return {key: v / norm for key, v in vector.items()} if norm else {}


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


def closest(
    terms: Sequence[str],
    candidates: Iterable[Pattern],
    vectors: Mapping[str, Vector] | None = None,
) -> tuple[Pattern | None, float]:
    """The candidate most similar to the ticket (ties: the most seen), if similar enough.

    By the ticket's `vectors` against each pattern's centroid; a pattern with no centroid
    (learned before centroids were kept) or no side in common, by key-term overlap.
    """
    best, best_score = None, 0.0
    for pattern in candidates:
        score = vector_similarity(vectors, pattern.centroid or {}) if vectors else None
        if score is None:
            overlap = similarity(terms, pattern.key_terms)
            # Below the overlap a legacy pattern needs, no match at all.
            score = overlap if overlap >= MIN_TERM_OVERLAP else 0.0
        if score > best_score or (
            best is not None
            and score == best_score
            and pattern.occurrence_count > best.occurrence_count
        ):
            best, best_score = pattern, score
    if best is None or best_score < MIN_SIMILARITY:
        return None, 0.0
    return best, best_score


def match(category: str, explanation: Iterable[Sequence], text: str = "") -> PatternMatch:
    """The known pattern a new ticket of `category` with this explanation (and `text`,
    its title and description) belongs to."""
    explanation = list(explanation)
    return match_terms(category, key_terms(explanation), ticket_vectors(text, explanation))


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


def match_terms(
    category: str, terms: tuple[str, ...], vectors: TicketVectors | None = None
) -> PatternMatch:
    """The known pattern of `category` closest to the ticket's vectors (or, without them,
    its key terms), if similar enough."""
    pattern, score = closest(terms, Pattern.objects.filter(category=category), vectors)
    return PatternMatch(pattern, score, terms, vectors or {})


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
        pattern.success_count >= MIN_PATTERN_OCCURRENCES and positive_feedback_rate(pattern) >= rate
    )


def eligibility_lines(pattern: Pattern, similar_resolved: int, needed: int) -> list[str]:
    """Whether `pattern` may act by itself and why, for people: step 6's known good
    pattern (its resolved similar tickets against the policy's `needed`, its positive
    feedback) and the seed's full eligibility rule, each number beside what it needs."""
    occurrences, rate = eligibility_thresholds()
    positive = positive_feedback_rate(pattern)
    known = similar_resolved >= needed and is_known_good(pattern)
    step_six = "yes" if known else "not yet"
    eligible = "yes" if is_eligible(pattern) else "not yet"
    return [
        f"Known good pattern (the decision's step 6): {step_six}. Similar resolved tickets "
        f"{similar_resolved} of the policy's {needed} (and at least "
        f"{MIN_PATTERN_OCCURRENCES}); positive feedback {positive:.0%} of {rate:.0%} needed.",
        f"Eligible for auto-remediation (the seed's rule): {eligible}. Occurrences "
        f"{pattern.occurrence_count} of {occurrences}; positive feedback {positive:.0%} of "
        f"{rate:.0%}; average reliability {pattern.avg_reliability:.1f} of "
        f"{ELIGIBLE_RELIABILITY:g}; automatic fixes that worked "
        f"{auto_remediation_success_rate(pattern):.0%} of {ELIGIBLE_AUTO_SUCCESS_RATE:.0%}.",
    ]


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
    was_eligible = pattern.eligible_for_auto_remediation
    n = pattern.occurrence_count + 1
    if found.vectors:
        pattern.centroid = joined_centroid(
            pattern.centroid or {}, found.vectors, pattern.centroid_members
        )
        pattern.centroid_members += 1
    pattern.avg_confidence += (confidence - pattern.avg_confidence) / n
    pattern.avg_reliability += (reliability - pattern.avg_reliability) / n
    pattern.occurrence_count = n
    pattern.last_seen_at = max(pattern.last_seen_at, now)
    pattern.eligible_for_auto_remediation = is_eligible(pattern)
    # Counting is bookkeeping, held under the pattern's lock that every host with this
    # problem waits on: a history row only when it changes what the pattern may do.
    if pattern.eligible_for_auto_remediation == was_eligible:
        pattern.save_without_historical_record()
    else:
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
