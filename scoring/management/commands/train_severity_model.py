"""Train, evaluate and register a severity model version (a candidate until approved)."""

import tempfile
from datetime import timedelta
from pathlib import Path

import numpy as np
from django.core.management.base import CommandError
from django.utils import timezone

from config.commands import WardenCommand
from scoring.actions import approve_model_version
from scoring.features import FEATURE_NAMES
from scoring.history import labelled_history
from scoring.models import ModelVersion
from scoring.registry import ModelIntegrityError, model_dir, register_training_result
from scoring.synthetic import generate_dataset
from scoring.tracking import TrackingUnavailable, log_training_run, require_mlflow, tracking_uri
from scoring.training import (
    DEFAULT_EVAL_HOSTS,
    DEFAULT_STEPS,
    DEFAULT_TRAIN_HOSTS,
    EVAL_SEED,
    TRAIN_SEED,
    train_severity_model,
)

# A person's verdict outweighs a generated sample.
HISTORY_WEIGHT = 5


class Command(WardenCommand):
    help = (
        "Train the severity model on generated data and people's verdicts, evaluate it on a "
        "held-out set drawn with another seed, and register it as a candidate version "
        "(--approve to serve it). With MLFLOW_TRACKING_URI set, the run is logged to MLflow."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--approve", action="store_true", help="approve it to serve at once")
        parser.add_argument(
            "--hosts",
            type=int,
            default=DEFAULT_TRAIN_HOSTS,
            help=f"simulated hosts to train on (default {DEFAULT_TRAIN_HOSTS})",
        )
        parser.add_argument(
            "--eval-hosts",
            type=int,
            default=DEFAULT_EVAL_HOSTS,
            help=f"simulated hosts in the held-out set (default {DEFAULT_EVAL_HOSTS})",
        )
        parser.add_argument(
            "--steps",
            type=int,
            default=DEFAULT_STEPS,
            help=f"readings per simulated host (default {DEFAULT_STEPS})",
        )
        parser.add_argument("--seed", type=int, default=TRAIN_SEED, help="seed of the training set")
        parser.add_argument(
            "--eval-seed",
            type=int,
            default=EVAL_SEED,
            help="seed of the held-out set; must differ from --seed",
        )
        parser.add_argument(
            "--history-days",
            type=int,
            default=180,
            help="learn from people's verdicts of the last N days (0: none)",
        )

    def handle(self, *args, **options) -> None:
        self.check_options(options)
        uri = tracking_uri()
        if uri:
            # Fail before the work, not after it.
            try:
                require_mlflow()
            except TrackingUnavailable as exc:
                raise CommandError(str(exc)) from exc

        hosts, steps = options["hosts"], options["steps"]
        self.stdout.write(f"Generating {hosts} hosts x {steps} steps (seed {options['seed']}) ...")
        train = generate_dataset(hosts, steps, options["seed"])
        self.stdout.write(
            f"Generating the held-out set: {options['eval_hosts']} hosts x {steps} steps "
            f"(seed {options['eval_seed']}) ..."
        )
        held_out = generate_dataset(
            options["eval_hosts"], steps, options["eval_seed"], label_noise=0.0
        )
        history_X, history_y = np.zeros((0, len(FEATURE_NAMES))), np.zeros(0, dtype=int)
        if options["history_days"]:
            history_X, history_y = labelled_history(
                timezone.now() - timedelta(days=options["history_days"])
            )
        self.stdout.write(f"  {len(history_y)} samples labelled by people's verdicts")
        X = np.vstack([train.X, *[history_X] * HISTORY_WEIGHT])
        y = np.concatenate([train.y, *[history_y] * HISTORY_WEIGHT])
        try:
            result = train_severity_model(
                X,
                y,
                held_out.X,
                held_out.y,
                seed=options["seed"],
                progress=lambda line: self.stdout.write(f"  {line}"),
            )
        except ValueError as exc:
            # Too little generated data can hold a single class.
            raise CommandError(f"cannot train: {exc}; try more --hosts or --steps") from exc

        version = register_training_result(
            result,
            actor="system:train_severity_model",
            params={
                "train_hosts": hosts,
                "eval_hosts": options["eval_hosts"],
                "steps": steps,
                "train_seed": options["seed"],
                "eval_seed": options["eval_seed"],
                "history_samples": len(history_y),
                "history_weight": HISTORY_WEIGHT,
            },
        )
        recall = result.metrics["per_class"]["HITL_REQUIRED"]["recall"]
        self.stdout.write(
            f"Registered model v{version.version} as a candidate ({version.artifact}, "
            f"sha256 {version.sha256[:12]}): macro-F1 {result.metrics['macro_f1']:.4f}, "
            f"HITL_REQUIRED recall {recall:.4f}"
        )
        if options["approve"]:
            try:
                approve_model_version(version, actor=None, reason="", now=timezone.now())
            except ModelIntegrityError as exc:
                raise CommandError(str(exc)) from exc
            version.refresh_from_db()
            self.stdout.write(self.style.SUCCESS(f"Model v{version.version} approved to serve."))
        else:
            self.stdout.write(
                "Not serving until approved: the admin's 'Approve to serve' action, "
                "or train with --approve."
            )
        if uri:
            self.log_to_mlflow(uri, version)

    def check_options(self, options: dict) -> None:
        if options["hosts"] < 1 or options["eval_hosts"] < 1:
            raise CommandError("--hosts and --eval-hosts must be at least 1")
        if options["steps"] < 2:
            raise CommandError("--steps must be at least 2")
        if options["history_days"] < 0:
            raise CommandError("--history-days cannot be negative")
        if options["seed"] == options["eval_seed"]:
            raise CommandError("--eval-seed must differ from --seed: the held-out set is separate")

    def log_to_mlflow(self, uri: str, version: ModelVersion) -> None:
        """Log the run; a failure warns, since the version is registered either way."""
        with tempfile.TemporaryDirectory() as scratch:
            svg = Path(scratch) / f"confusion-matrix-v{version.version}.svg"
            svg.write_text(version.confusion_matrix_svg)
            try:
                run_id = log_training_run(
                    uri,
                    run_name=f"severity-v{version.version}",
                    params=version.params,
                    metrics=version.metrics,
                    artifacts=[model_dir() / version.artifact, svg],
                    tags={
                        "warden.model_version": str(version.version),
                        "warden.sha256": version.sha256,
                        "warden.status": version.status,
                    },
                )
            except Exception as exc:  # tracking is a record of the run, not the run itself
                self.stderr.write(
                    f"Warning: model v{version.version} is registered, "
                    f"but logging to MLflow at {uri} failed: {exc}"
                )
                return
        self.stdout.write(f"Logged to MLflow at {uri}: run {run_id}")
