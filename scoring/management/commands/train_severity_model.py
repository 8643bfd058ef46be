from datetime import timedelta

import numpy as np
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from scoring.choices import Severity
from scoring.features import FEATURE_NAMES
from scoring.history import labelled_history
from scoring.registry import approve_model_version, register_version
from scoring.synthetic import generate_dataset
from scoring.training import (
    DEFAULT_STEPS,
    DEFAULT_TRAIN_HOSTS,
    EVAL_SEED,
    TRAIN_SEED,
    confusion_matrix_svg,
    train_severity_model,
)

HISTORY_WEIGHT = 5


class Command(BaseCommand):
    help = (
        "Train the severity model on generated data, evaluate it on a held-out set drawn "
        "with another seed, and register it as a candidate version (--approve to serve it)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--approve", action="store_true", help="approve it to serve at once")
        parser.add_argument("--hosts", type=int, default=DEFAULT_TRAIN_HOSTS)
        parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
        parser.add_argument("--seed", type=int, default=TRAIN_SEED)
        parser.add_argument("--eval-seed", type=int, default=EVAL_SEED)
        parser.add_argument(
            "--history-days", type=int, default=180, help="people's verdicts to learn from"
        )

    def handle(self, *args, **options) -> None:
        if options["hosts"] < 1 or options["steps"] < 2:
            raise CommandError("--hosts must be at least 1 and --steps at least 2")
        if options["seed"] == options["eval_seed"]:
            raise CommandError("--eval-seed must differ from --seed: the held-out set is separate")
        self.stdout.write(f"Generating {options['hosts']} hosts x {options['steps']} steps ...")
        train = generate_dataset(options["hosts"], options["steps"], options["seed"])
        held_out = generate_dataset(
            options["hosts"], options["steps"], options["eval_seed"], label_noise=0.0
        )
        history_X, history_y = labelled_history(
            timezone.now() - timedelta(days=options["history_days"])
        )
        self.stdout.write(f"  {len(history_y)} samples labelled by people's verdicts")
        # A person's verdict outweighs a generated sample.
        X = np.vstack([train.X, *[history_X] * HISTORY_WEIGHT])
        y = np.concatenate([train.y, *[history_y] * HISTORY_WEIGHT])
        result = train_severity_model(
            X,
            y,
            held_out.X,
            held_out.y,
            seed=options["seed"],
            progress=lambda line: self.stdout.write(f"  {line}"),
        )
        version = register_version(
            estimator=result.estimator,
            algorithm=type(result.estimator).__name__,
            feature_names=FEATURE_NAMES,
            thresholds=result.thresholds,
            class_weights=result.class_weights,
            params={
                **result.params,
                "train_seed": options["seed"],
                "eval_seed": options["eval_seed"],
            },
            metrics=result.metrics,
            feature_distribution=result.feature_distribution,
            confusion_matrix_svg=confusion_matrix_svg(
                result.metrics["confusion_matrix"], Severity.labels
            ),
            actor="system:train_severity_model",
        )
        recall = result.metrics["per_class"]["HITL_REQUIRED"]["recall"]
        self.stdout.write(
            f"Registered model v{version.version}: macro-F1 {result.metrics['macro_f1']:.4f}, "
            f"HITL_REQUIRED recall {recall:.4f}"
        )
        if options["approve"]:
            approve_model_version(version, user=None, now=timezone.now())
            self.stdout.write(self.style.SUCCESS(f"Model v{version.version} approved to serve."))
