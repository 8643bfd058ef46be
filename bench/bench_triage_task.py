"""Throughput of the triage task (remediation.triage.triage_pending): tickets per second
triaged and decided in batches, one by one, and the bare model on the same texts.

In one process, on a throwaway SQLite database in a temporary folder (migrated first, so
allow a minute), with the triage model trained on the shipped corpus and approved:

- bare: scoring.triage.serving.triage_texts + similar_incidents on all the texts at once;
- batched: the task with batches of `--batch` tickets (one model call each);
- one by one: the task with batches of 1 (one model call per ticket).

Each ticket is the seed's kind: no host in the body, a host named in its text, so each is
triaged, its host inferred, and decided (an approval request), as in production.

    .venv/bin/python bench/bench_triage_task.py [--tickets 300] [--batch 32]
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PHRASES = [
    "Web service not responding on port 8080 on {host}",
    "{host}: nginx returns 502 for every request since the deploy",
    "Disk almost full on {host}, /var/log growing fast",
    "Users report the site on {host} is down",
    "{host} memory climbing, the app service leaks",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=300)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="warden-bench-triage-"))
    os.environ["DATABASE_URL"] = f"sqlite:///{folder / 'bench.sqlite3'}"
    os.environ.pop("REDIS_URL", None)
    os.environ["MODEL_DIR"] = str(folder / "models")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.utils import timezone

    settings.MODEL_DIR = folder / "models"
    call_command("migrate", verbosity=0)

    from remediation import intake, triage
    from remediation.actions import add_host
    from remediation.intake import ExternalTicket, open_external_ticket
    from remediation.models import Ticket
    from scoring.triage.actions import approve_triage_model_version
    from scoring.triage.corpus import CATALOGUE, load_corpus
    from scoring.triage.model import label_of, train_triage_model
    from scoring.triage.registry import register_triage_result
    from scoring.triage.serving import similar_incidents, triage_texts

    incidents = load_corpus()
    result = train_triage_model(
        [i.text for i in incidents],
        [label_of(i.category, i.runbook) for i in incidents],
        {name: risk for name, (_, risk) in CATALOGUE.items()},
        threshold=0.5,
    )
    version = register_triage_result(result, actor="system:bench")
    approve_triage_model_version(version, actor=None, now=timezone.now(), reason="bench")
    hosts = [add_host(f"web-{n:03d}", now=timezone.now())[0].name for n in range(args.tickets)]
    # Stored without a task: the bench runs the task itself.
    intake.enqueue_triage = lambda: None
    triage.enqueue_triage = lambda: None

    def store(prefix: str) -> list[str]:
        texts = []
        for n, host in enumerate(hosts):
            text = PHRASES[n % len(PHRASES)].format(host=host)
            report = ExternalTicket(
                ticket_id=f"{prefix}-{n}",
                host="",
                category="server",
                title=text[:60],
                description=text,
            )
            open_external_ticket(report, user=None, now=timezone.now(), triage_first=True)
            texts.append(f"{text[:60]}\n{text}")
        return texts

    def run_task(batch: int) -> float:
        started = time.perf_counter()
        while triage.triage_pending(timezone.now(), batch_size=batch):
            pass
        return time.perf_counter() - started

    def close_all() -> None:
        # The next round's hosts are free again (one open ticket per host and category).
        Ticket.objects.exclude(status__in=["resolved", "closed"]).update(
            status="closed", resolved_at=timezone.now()
        )

    texts = store("A")
    triage_texts(texts[:1])  # loads the approved model and builds the incidents' index
    similar_incidents(texts[:1])
    started = time.perf_counter()
    triage_texts(texts)
    similar_incidents(texts)
    bare = time.perf_counter() - started
    batched = run_task(args.batch)
    close_all()
    store("B")
    single = run_task(1)
    decided = Ticket.objects.filter(decisions__isnull=False).distinct().count()

    n = args.tickets
    print(f"{n} tickets, each triaged, its host inferred from the text and decided")
    print(f"bare model (one call, {n} texts):      {n / bare:8.0f} tickets/s")
    print(f"task, batches of {args.batch:<4}               {n / batched:8.1f} tickets/s")
    print(f"task, one by one:                     {n / single:8.1f} tickets/s")
    print(f"decided: {decided} of {2 * n}")


if __name__ == "__main__":
    main()
