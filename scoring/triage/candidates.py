"""Train a triage model candidate, and compare a candidate with the serving version.

The flows behind `manage.py train_triage_model` and the django-q2 tasks
(scoring.triage.tasks): both record how far they are in the candidate's `progress`, and
the comparison's figures in its `comparison`, which the admin shows before anyone
approves (scoring.triage.actions refuses an approval without one while a version serves).
"""

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.db import transaction

from governance.audit.errors import Conflict
from governance.audit.log import append_events, event
from scoring.choices import ModelStatus
from scoring.models import TriageModelVersion
from scoring.triage.corpus import CORPUS_PATH, Incident, load_corpus
from scoring.triage.history import catalogue_risk, recent_tickets, resolved_tickets_since
from scoring.triage.model import CV_FOLDS, label_of, risk_rank, train_triage_model
from scoring.triage.registry import register_triage_result, serving_triage_from
from scoring.triage.serving import TextTriage, triage_with

# People's tickets count for more than a generated phrasing.
HISTORY_WEIGHT = 3
COMPARE_DAYS = 30
COMPARE_LIMIT = 1000
COMPARE_BATCH = 100


class CorpusError(ValueError):
    """The corpus file cannot be read as incidents."""


def read_corpus(path: Path) -> list[Incident]:
    try:
        incidents = load_corpus(path)
    except OSError as exc:
        raise CorpusError(f"cannot read the corpus {path}: {exc.strerror or exc}") from exc
    except (json.JSONDecodeError, TypeError) as exc:
        raise CorpusError(f"the corpus {path} is not JSON lines of incidents: {exc}") from exc
    if not incidents:
        raise CorpusError(f"the corpus {path} holds no incidents")
    return incidents


def set_progress(version: TriageModelVersion, now: datetime, **progress: Any) -> None:
    """Record how far a task has come (outside any transaction: others see it at once)."""
    version.progress = {**progress, "updated_at": now.isoformat()}
    TriageModelVersion.objects.filter(pk=version.pk).update(progress=version.progress)


def request_comparison(version: TriageModelVersion, *, actor: str, now: datetime) -> None:
    """Mark a version's comparison as queued, audited; the serving version is refused (it
    would be compared with itself)."""
    with transaction.atomic():
        version = TriageModelVersion.objects.select_for_update().get(pk=version.pk)
        if version.status == ModelStatus.APPROVED:
            raise Conflict(
                "serving",
                f"triage model v{version.version} is the serving version: compare "
                "a candidate with it instead",
            )
        set_progress(version, now, stage="queued")
        append_events(
            [
                event(
                    actor,
                    "triage_model.comparison_requested",
                    version,
                    f"comparison of triage model v{version.version} with the serving version "
                    "requested",
                )
            ]
        )


def train_candidate(
    *,
    actor: str,
    now: datetime,
    seed: int = 0,
    history_days: int = 365,
    corpus_path: Path = CORPUS_PATH,
    cv_folds: int = CV_FOLDS,
    progress: Callable[[str], None] | None = None,
) -> TriageModelVersion:
    """Train on the corpus and people's resolved tickets; register the candidate."""
    say = progress or (lambda line: None)
    incidents = read_corpus(corpus_path)
    history = resolved_tickets_since(now - timedelta(days=history_days)) if history_days else []
    say(f"{len(incidents)} corpus incidents, {len(history)} resolved tickets from people")
    result = train_triage_model(
        [i.text for i in incidents],
        [label_of(i.category, i.runbook) for i in incidents],
        catalogue_risk(),
        groups=[i.phrasing for i in incidents],
        extra_texts=[t.text for t in history] * HISTORY_WEIGHT,
        extra_y=[t.label for t in history] * HISTORY_WEIGHT,
        seed=seed,
        cv_folds=cv_folds,
        progress=say,
    )
    version = register_triage_result(
        result,
        actor=actor,
        params={
            "corpus": corpus_path.name,
            "history_days": history_days,
            "history_tickets": len(history),
            "history_weight": HISTORY_WEIGHT,
        },
    )
    set_progress(version, now, stage="registered")
    return version


def _figures(answers: list[TextTriage], truth: list[Any], risk: dict[str, str]) -> dict[str, Any]:
    """On the tickets whose fix is known: accuracy of the suggestion and unsafe ones."""
    known = [(a, t) for a, t in zip(answers, truth, strict=True) if t.resolved]
    return {
        "abstention_rate": round(sum(a.unsure for a in answers) / max(len(answers), 1), 4),
        "known": len(known),
        "accuracy_on_known": round(
            sum(a.runbook == t.runbook and a.category == t.category for a, t in known)
            / max(len(known), 1),
            4,
        ),
        "unsafe_suggestions": sum(
            1
            for a, t in known
            if a.runbook
            and a.runbook in risk
            and risk_rank(a.runbook, risk) < risk_rank(t.runbook, risk)
        ),
    }


def compare_with_serving(
    candidate: TriageModelVersion,
    *,
    now: datetime,
    actor: str = "system",
    days: int = COMPARE_DAYS,
    limit: int = COMPARE_LIMIT,
    batch: int = COMPARE_BATCH,
) -> dict[str, Any]:
    """Re-score the last `days`' tickets (at most `limit`) with the candidate and with the
    serving version, batch by batch; store and audit the comparison on the candidate."""
    serving_row = TriageModelVersion.objects.filter(status=ModelStatus.APPROVED).first()
    if serving_row is not None and serving_row.pk == candidate.pk:
        raise ValueError(f"triage model v{candidate.version} is the serving version")
    tickets = recent_tickets(now - timedelta(days=days), limit)
    models = {"candidate": serving_triage_from(candidate)}
    if serving_row is not None:
        models["serving"] = serving_triage_from(serving_row)
    answers: dict[str, list[TextTriage]] = {name: [] for name in models}
    set_progress(candidate, now, stage="comparing", done=0, total=len(tickets))
    for start in range(0, len(tickets), batch):
        texts = [t.text for t in tickets[start : start + batch]]
        for name, model in models.items():
            answers[name].extend(triage_with(model, texts))
        set_progress(candidate, now, stage="comparing", done=start + len(texts), total=len(tickets))
    risk = catalogue_risk()
    comparison: dict[str, Any] = {
        "serving_version_id": serving_row.pk if serving_row else None,
        "serving_version": serving_row.version if serving_row else None,
        "days": days,
        "tickets": len(tickets),
        **{name: _figures(found, tickets, risk) for name, found in answers.items()},
        "finished_at": now.isoformat(),
    }
    if serving_row is not None:
        differ = [
            (t.pk, c.runbook, s.runbook)
            for t, c, s in zip(tickets, answers["candidate"], answers["serving"], strict=True)
            if (c.category, c.runbook) != (s.category, s.runbook)
        ]
        comparison["agreement"] = round(1 - len(differ) / max(len(tickets), 1), 4)
        comparison["disagreements"] = [
            {"ticket": pk, "candidate": c, "serving": s} for pk, c, s in differ[:10]
        ]
    with transaction.atomic():
        candidate.comparison = comparison
        candidate.save(update_fields=["comparison"])
        set_progress(candidate, now, stage="compared", done=len(tickets), total=len(tickets))
        against = f"v{serving_row.version}" if serving_row else "no serving version"
        append_events(
            [
                event(
                    actor,
                    "triage_model.compared",
                    candidate,
                    f"triage model v{candidate.version} compared with {against} "
                    f"on {len(tickets)} recent tickets",
                    data=comparison,
                )
            ]
        )
    return comparison
