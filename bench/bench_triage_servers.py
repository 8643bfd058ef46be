"""Tickets in people's words through the production arrangement: POST to the ticket API,
triaged and decided by a real qcluster, batched against one by one, beside the bare model.

Starts a throwaway PostgreSQL and Redis (bench/servers.py), migrates, trains and approves
the severity and triage models, registers `--tickets` hosts per round and an integrator
token (`create_api_token itsm`), then per round:

1. the web command (gunicorn, sync workers) and a qcluster with WARDEN_TRIAGE_BATCH_SIZE
   set to the round's batch size;
2. `--tickets` tickets POSTed by `--clients` concurrent clients, each the seed's body with
   no `host`: the host is named in the text, so every ticket is triaged, its host inferred
   and decided (an approval request, as the seed's server category asks of a person);
3. the round's time runs from the first POST until no ticket is `processing` and every
   ticket has a decision (read from PostgreSQL every 50 ms).

The floor, in this process on the same texts: the triage pipeline's bare `predict`, batched
and one by one (one OpenMP thread, as the workers run it).

    .venv/bin/python bench/bench_triage_servers.py [--tickets 300] [--clients 8]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg

from bench.servers import (
    ARRANGEMENTS,
    Server,
    free_port,
    manage,
    prepare_database,
    register,
    throwaway_servers,
    warden_env,
)

PHRASES = (
    "Web service not responding on port 8080 on {host}",
    "{host}: nginx answers 502 to every request since the deploy",
    "Disk almost full on {host}, /var/log keeps growing",
    "Users say the site on {host} is down, please look",
    "{host} memory climbing all day, the app service leaks",
)


def texts_for(hosts: list[str]) -> list[tuple[str, str]]:
    """(title, description) of each host's ticket, the seed's shape with the host in words."""
    return [
        (
            PHRASES[n % len(PHRASES)].format(host=host)[:60],
            PHRASES[n % len(PHRASES)].format(host=host),
        )
        for n, host in enumerate(hosts)
    ]


def post_all(port: int, token: str, prefix: str, texts: list, clients: int) -> list[int]:
    def post(item: tuple[int, tuple[str, str]]) -> int:
        n, (title, description) = item
        body = {
            "ticket_id": f"{prefix}-{n}",
            "title": title,
            "description": description,
            "category": "server",
            "enable_auto_remediation": True,
        }
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/tickets",
            data=json.dumps(body).encode(),
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Token {token}",
                "Host": "localhost",
            },
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(post, enumerate(texts)))


def wait_decided(database_url: str, prefix: str, count: int, timeout: float = 600) -> float:
    """Seconds until every ticket of the round left `processing` with a decision."""
    started = time.perf_counter()
    with psycopg.connect(database_url, autocommit=True) as db:
        while time.perf_counter() - started < timeout:
            (done,) = db.execute(
                "SELECT count(DISTINCT t.id) FROM remediation_ticket t "
                "JOIN governance_decision d ON d.ticket_id = t.id "
                "WHERE t.ticket_id LIKE %s AND t.status <> 'processing'",
                (f"{prefix}-%",),
            ).fetchone()
            if done >= count:
                return time.perf_counter() - started
            time.sleep(0.05)
    raise SystemExit(f"round {prefix}: only {done} of {count} decided in {timeout:.0f} s")


def floor(texts: list[tuple[str, str]]) -> tuple[float, float]:
    """The bare pipeline's predict on the same texts: tickets/s batched and one by one."""
    from scoring.serving import one_thread
    from scoring.triage.corpus import CATALOGUE, incident_text, load_corpus
    from scoring.triage.model import label_of, train_triage_model

    incidents = load_corpus()
    result = train_triage_model(
        [i.text for i in incidents],
        [label_of(i.category, i.runbook) for i in incidents],
        {name: risk for name, (_, risk) in CATALOGUE.items()},
        threshold=0.5,
    )
    pipeline = result.pipeline
    joined = [incident_text(title, description) for title, description in texts]
    with one_thread():
        pipeline.predict(joined[:1])
        started = time.perf_counter()
        pipeline.predict(joined)
        batched = len(joined) / (time.perf_counter() - started)
        started = time.perf_counter()
        for text in joined:
            pipeline.predict([text])
        single = len(joined) / (time.perf_counter() - started)
    return batched, single


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=300)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    rounds = (("batched", args.batch), ("one-by-one", 1))
    results = {}
    with throwaway_servers() as dbs, tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        env = warden_env(dbs, data_dir)
        prepare_database(env)
        manage(env, "train_triage_model", "--approve")
        token = manage(env, "create_api_token", "itsm").strip().splitlines()[-1]
        for name, batch in rounds:
            hosts = [host for host, _ in register(env, f"{name[:3]}", args.tickets)]
            texts = texts_for(hosts)
            round_env = {**env, "WARDEN_TRIAGE_BATCH_SIZE": str(batch)}
            web = Server(
                f"web-{name}",
                ARRANGEMENTS["sync"].format(workers=2),
                round_env,
                free_port(),
            )
            qcluster = Server(f"qcluster-{name}", "manage.py qcluster", round_env, None)
            try:
                web.wait_ready()
                time.sleep(3)  # the qcluster's workers are up and the model loaded lazily
                started = time.perf_counter()
                statuses = post_all(web.port, token, name, texts, args.clients)
                posted = time.perf_counter() - started
                drained = posted + wait_decided(dbs.database_url, name, args.tickets)
            finally:
                web.stop()
                qcluster.stop()
            accepted = statuses.count(202)
            if accepted != args.tickets:
                raise SystemExit(f"{name}: {accepted} of {args.tickets} answered 202")
            results[name] = (batch, posted, drained)
        bare_batched, bare_single = floor(texts)

    n = args.tickets
    print(f"{n} tickets per round, POSTed by {args.clients} clients to gunicorn (2 sync workers),")
    print("triaged and decided by a qcluster (2 workers) on PostgreSQL and Redis")
    print(f"{'round':<12}{'batch':>6}{'POSTs/s':>10}{'decided/s':>11}")
    for name, (batch, posted, drained) in results.items():
        print(f"{name:<12}{batch:>6}{n / posted:>10.1f}{n / drained:>11.1f}")
    print(f"floor: bare pipeline.predict, batched {bare_batched:,.0f}/s, ", end="")
    print(f"one by one {bare_single:,.0f}/s")


if __name__ == "__main__":
    main()
