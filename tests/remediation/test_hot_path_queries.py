"""The statements an agent's post costs: what the work needs, and no fleet-wide lock."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

# Execution mechanics: self-healing trusts from the first ticket (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("trusting_policies")


# The samples' minute summaries are merged in the samples' own INSERT on PostgreSQL; SQLite
# takes a second statement (scoring.samples).
SUMMARIES = 0 if connection.vendor == "postgresql" else 1


def statements(agent, payload) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        response = agent.post_metrics(payload)
    assert response.status_code == 201, response.content
    return [
        q["sql"]
        for q in queries.captured_queries
        if not q["sql"].upper().startswith(("SAVEPOINT", "RELEASE SAVEPOINT", "BEGIN", "COMMIT"))
    ]


def test_a_healthy_batch_authenticates_marks_the_host_and_inserts(agent, settings):
    agent.post_metrics(agent.sample())  # the host's first reading is on record
    settings.WARDEN_MODEL_REFRESH_SECONDS = 3600  # (production looks every few seconds)
    sql = statements(agent, [agent.sample() for _ in range(6)])
    # the key's host; the host marked (and verifications looked up); the samples
    assert len(sql) == 3 + SUMMARIES, "\n".join(s[:120] for s in sql)


def test_a_repeated_problem_is_counted_on_its_ticket_without_locking_shared_rows(agent, settings):
    agent.post_metrics(agent.sample("disk"))
    settings.WARDEN_MODEL_REFRESH_SECONDS = 3600
    sql = statements(agent, [agent.sample("disk") for _ in range(6)])
    assert len(sql) == 4 + SUMMARIES, "\n".join(s[:120] for s in sql)
    shared = ("governance_auditchainhead", "remediation_counter", "feedback_pattern")
    assert not [s for s in sql if any(table in s for table in shared)], sql
