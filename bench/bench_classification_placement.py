"""Where classification runs: inline in the request, or queued for a worker that classifies
many hosts' samples in one batch (issue 9, part 5). In one process, on a throwaway
PostgreSQL and Redis (bench/servers.py), through the product's own functions.

- inline: what the web worker does today, remediation.pipeline.ingest_samples for one
  agent's batch (classify, lock the host, store the samples with their verdicts).
- queued, request side: the samples stored without verdicts and a django-q2 task
  enqueued on Redis (the answer would be 202 with a batch id).
- queued, worker side: many requests' samples read back, classified in one call,
  their verdicts written: per request, amortised over `--hosts` requests.
- the floor: the model alone on one request's samples and, amortised, on all of them.

Every request is one host's minute: 6 healthy readings 10 s apart (the fleet's traffic).

    .venv/bin/python bench/bench_classification_placement.py [--hosts 500] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.servers import PYTHON, ROOT, prepare_database, throwaway_servers, warden_env

PER_REQUEST = 6


def measure(n_hosts: int, rounds: int) -> dict[str, list[float]]:
    """Milliseconds per request of each path, one figure per round (runs inside Django)."""
    import django

    django.setup()
    from datetime import timedelta

    from django.db import connection, transaction
    from django.utils import timezone
    from django_q.tasks import async_task

    from remediation.actions import add_host
    from remediation.models import Host
    from remediation.pipeline import ingest_samples
    from scoring.features import Reading, build_features
    from scoring.inference import Classification, classify
    from scoring.models import MetricSample
    from scoring.registry import serving_model
    from scoring.samples import insert_samples

    model = serving_model()
    for i in range(2 * n_hosts):
        add_host(f"place-{i:05d}", now=timezone.now(), labels={"env": "bench"})
    inline_hosts = list(Host.objects.filter(name__lt=f"place-{n_hosts:05d}").order_by("name"))
    queued_hosts = list(Host.objects.filter(name__gte=f"place-{n_hosts:05d}").order_by("name"))
    start = timezone.now() - timedelta(hours=2)
    pending = Classification(0, 0.0, (), (), None)  # placeholders until the worker classifies

    def minute(host: Host, r: int) -> list[Reading]:
        at = start + timedelta(minutes=r)
        return [
            Reading(host.name, at + timedelta(seconds=10 * k), 41.0, 52.0, 23.0, 18.0, 0)
            for k in range(PER_REQUEST)
        ]

    figures: dict[str, list[float]] = {
        "inline": [],
        "queued_request": [],
        "queued_worker": [],
        "model_one_request": [],
        "model_amortised": [],
    }
    for r in range(rounds + 1):  # round 0 warms up
        now = timezone.now()
        began = time.perf_counter()
        for host in inline_hosts:
            host.refresh_from_db(fields=["last_sample_at", "last_metrics"])
            ingest_samples(host, minute(host, r), now)
        inline = (time.perf_counter() - began) / n_hosts

        began = time.perf_counter()
        batches = []
        for host in queued_hosts:
            with transaction.atomic():
                readings = minute(host, r)
                ids = insert_samples(
                    host.pk, readings, [pending] * PER_REQUEST, model.version_id, now
                )
                async_task("scoring.inference.classify", ids)  # a worker would classify these
            batches.append(ids)
        request = (time.perf_counter() - began) / n_hosts

        began = time.perf_counter()
        ids = [pk for batch in batches for pk in batch]
        rows = list(
            MetricSample.objects.filter(pk__in=ids)
            .select_related("host")
            .order_by("host_id", "taken_at")
        )
        readings = [
            Reading(
                row.host.name,
                row.taken_at,
                row.disk_usage,
                row.memory_usage,
                row.cpu_usage,
                row.dns_latency_ms,
                int(row.firewall_change_requested),
            )
            for row in rows
        ]
        verdicts = classify(model.estimator, build_features(readings), model.thresholds)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "UPDATE scoring_metricsample AS s SET severity = v.severity, "
                "confidence = v.confidence, category = v.category, explanation = v.explanation "
                "FROM unnest(%s::int8[], %s::int2[], %s::float8[], %s::varchar[], %s::jsonb[]) "
                "AS v(id, severity, confidence, category, explanation) WHERE s.id = v.id",
                [
                    [row.pk for row in rows],
                    [v.severity for v in verdicts],
                    [v.confidence for v in verdicts],
                    [v.category or "" for v in verdicts],
                    [json.dumps(v.explanation) for v in verdicts],
                ],
            )
        worker = (time.perf_counter() - began) / n_hosts

        X = build_features(readings)
        began = time.perf_counter()
        for i in range(0, len(X), PER_REQUEST):
            model.estimator.predict_proba(X[i : i + PER_REQUEST])
        one = (time.perf_counter() - began) / n_hosts
        began = time.perf_counter()
        model.estimator.predict_proba(X)
        amortised = (time.perf_counter() - began) / n_hosts
        if r:
            for name, value in zip(figures, (inline, request, worker, one, amortised), strict=True):
                figures[name].append(value * 1000)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=500, help="requests per round and path")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        print(json.dumps(measure(args.hosts, args.rounds)))
        return
    with throwaway_servers("warden_placement") as dbs, tempfile.TemporaryDirectory() as tmp:
        env = warden_env(dbs, Path(tmp))
        prepare_database(env)
        result = subprocess.run(
            [PYTHON, __file__, "--inner", "--hosts", str(args.hosts), "--rounds", str(args.rounds)],
            cwd=ROOT,
            env={**env, "DJANGO_SETTINGS_MODULE": "config.settings"},
            capture_output=True,
            text=True,
        )
        if result.returncode:
            raise SystemExit(result.stderr)
        figures = json.loads(result.stdout.strip().splitlines()[-1])
    median = {name: statistics.median(values) for name, values in figures.items()}
    queued = median["queued_request"] + median["queued_worker"]
    print(
        f"Classification placement: {args.hosts} requests of {PER_REQUEST} healthy samples "
        f"per round, median of {args.rounds} rounds, ms of one core per request\n"
        f"  inline (ingest_samples, the product)        {median['inline']:7.2f}\n"
        f"  queued: request (store + enqueue, 202)      {median['queued_request']:7.2f}\n"
        f"  queued: worker, amortised (read, classify,\n"
        f"          write verdicts for all at once)     {median['queued_worker']:7.2f}\n"
        f"  queued: total                               {queued:7.2f}"
        f"  ({queued / median['inline']:.2f}x inline)\n"
        f"  floor: the model on one request's samples   {median['model_one_request']:7.2f}\n"
        f"  floor: the model on all, per request        {median['model_amortised']:7.2f}\n"
        f"  batching can save at most                   "
        f"{median['model_one_request'] - median['model_amortised']:7.2f}"
        f"  ({(median['model_one_request'] - median['model_amortised']) / median['inline']:.1%}"
        f" of an inline request)"
    )


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    main()
