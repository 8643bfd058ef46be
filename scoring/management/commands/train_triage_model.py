"""Train, evaluate and register a text triage model version (a candidate until approved)."""

from pathlib import Path

from django.core.management.base import CommandError
from django.utils import timezone

from config.commands import WardenCommand
from governance.audit.errors import Refused
from scoring.choices import ModelStatus
from scoring.models import TriageModelVersion
from scoring.triage.actions import approve_triage_model_version
from scoring.triage.candidates import (
    COMPARE_DAYS,
    CorpusError,
    compare_with_serving,
    train_candidate,
)
from scoring.triage.corpus import CORPUS_PATH
from scoring.triage.model import CV_FOLDS


class Command(WardenCommand):
    help = (
        "Train the text triage model on the shipped incident corpus and people's resolved "
        "tickets, evaluate it on a held-out share of the corpus, and register it as a "
        "candidate version (--approve to serve it; while another version serves, it is first "
        "compared with it on recent tickets)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--approve", action="store_true", help="approve it to serve at once")
        parser.add_argument("--seed", type=int, default=0, help="seed of the split and the fit")
        parser.add_argument(
            "--history-days",
            type=int,
            default=365,
            help="learn from tickets resolved in the last N days (0: none)",
        )
        parser.add_argument(
            "--corpus", type=Path, default=CORPUS_PATH, help="JSON lines of incidents"
        )
        parser.add_argument(
            "--cv-folds",
            type=int,
            default=CV_FOLDS,
            help=f"folds choosing the abstention threshold (default {CV_FOLDS}; 0: strictest)",
        )

    def handle(self, *args, **options) -> None:
        if options["history_days"] < 0:
            raise CommandError("--history-days cannot be negative")
        if options["cv_folds"] == 1 or options["cv_folds"] < 0:
            raise CommandError("--cv-folds must be 0 or at least 2")
        now = timezone.now()
        try:
            version = train_candidate(
                actor="system:train_triage_model",
                now=now,
                seed=options["seed"],
                history_days=options["history_days"],
                corpus_path=options["corpus"],
                cv_folds=options["cv_folds"],
                progress=lambda line: self.stdout.write(f"  {line}"),
            )
        except (CorpusError, ValueError) as exc:
            raise CommandError(f"cannot train: {exc}") from exc
        m = version.metrics
        self.stdout.write(
            f"Registered triage model v{version.version} as a candidate ({version.artifact}): "
            f"runbook accuracy {m['runbook_accuracy']:.4f}, category accuracy "
            f"{m['category_accuracy']:.4f}, {m['unsafe_suggestions']} unsafe suggestions, "
            f"abstains on {m['abstention_rate']:.1%} (threshold {version.thresholds['threshold']})"
        )
        if not options["approve"]:
            self.stdout.write(
                "Not serving until approved: compare it with the serving version and approve it "
                "in the admin, or train with --approve."
            )
            return
        if TriageModelVersion.objects.filter(status=ModelStatus.APPROVED).exists():
            comparison = compare_with_serving(
                version, now=timezone.now(), actor="system:train_triage_model"
            )
            self.stdout.write(
                f"Compared with v{comparison['serving_version']} on {comparison['tickets']} "
                f"tickets of the last {COMPARE_DAYS} days: agreement "
                f"{comparison['agreement']:.1%}, unsafe suggestions "
                f"{comparison['candidate']['unsafe_suggestions']} (serving: "
                f"{comparison['serving']['unsafe_suggestions']})"
            )
        try:
            approve_triage_model_version(version, actor=None, reason="", now=timezone.now())
        except Refused as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(self.style.SUCCESS(f"Triage model v{version.version} approved to serve."))
