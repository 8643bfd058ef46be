"""Every API operation answers as the OpenAPI schema says: schemathesis generates requests
from /api/schema (valid and invalid ones) and sends them to the WSGI application in-process.

No operation may answer with a server error, a status code the schema does not list, a
content type it does not name, or a body that does not match the documented one. Callers
are authenticated so that requests reach the views: people's endpoints with a knox token
of a user in every role, agents' endpoints with a host's key. Some requests are about real
objects (a ticket, an execution, an approval request, the agent's own samples), so that
they get past "not found" to the views' own answers. Generation is derandomized: each run
sends the same requests.

`-s` prints the run's figures: operations, cases, server errors and undocumented responses
(each counted once per operation, kind of failure and status code), then each operation's
status codes.
"""

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
import schemathesis
from django.contrib.auth.models import Group, User
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.utils import timezone
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup, ServerError
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from config.wsgi import application
from governance.models import ApprovalRequest
from governance.people.actions import issue_api_token
from remediation.actions import close_ticket
from remediation.intake import TICKET_ID, ExternalTicket, open_external_ticket
from remediation.models import Ticket

# Execution mechanics: self-healing trusts from the first ticket (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("trusting_policies")

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Per operation: enough to reach its documented answers, few enough that the file runs in
# well under a minute on two cores.
MAX_EXAMPLES = 25
# "alert senders" is the alert receivers' role.
ROLES = ("supervisors", "approvers", "compliance", "integrators", "alert senders")
# A path value of the documented form that names nothing.
MISSING = {"ticket_id": "NO-SUCH-TICKET"}


@dataclass
class Tally:
    """What the run sent and found: each distinct failure (operation, kind, status) once,
    with the report of the first case that showed it, and how many cases did."""

    operations: int = 0
    cases: int = 0
    failures: dict[tuple[str, str, int], str] = field(default_factory=dict)
    seen: Counter = field(default_factory=Counter)
    statuses: dict[str, Counter] = field(default_factory=dict)

    def record(self, failure: Failure, status: int, report: str) -> None:
        key = (failure.operation or "?", type(failure).__name__, status)
        self.seen[key] += 1
        self.failures.setdefault(key, report)

    @property
    def server_errors(self) -> int:
        return sum(1 for _, kind, _ in self.failures if kind == ServerError.__name__)

    @property
    def undocumented(self) -> int:
        return len(self.failures) - self.server_errors

    def summary(self) -> str:
        return (
            f"API conformance: {self.operations} operations, {self.cases} cases, "
            f"{self.server_errors} server errors, {self.undocumented} undocumented responses"
        )


@pytest.fixture
def wsgi_requests_keep_the_test_transaction(seeded: "Seeded") -> Iterator[None]:
    """Django's WSGI handler closes the database connection after each request, which would
    end the test's transaction; its test client unhooks the same signal for the same reason,
    and hooks it again after each of its requests: so this comes after the seeding's."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def everyone(db: None) -> User:
    """A user in every role, so that each people's endpoint lets the call in."""
    user = User.objects.create_user("conformance", email="conformance@example.com")
    user.groups.add(*Group.objects.filter(name__in=ROLES))
    return user


@dataclass(frozen=True)
class Seeded:
    """Real objects for generated requests to be about: the path parameters of each path
    (a few to choose from), and by operation, body fields and query parameters to set
    (each a strategy)."""

    paths: dict[str, list[dict[str, Any]]]
    fields: dict[str, dict[str, st.SearchStrategy]]
    query: dict[str, dict[str, st.SearchStrategy]]


@pytest.fixture
def seeded(agent: Any, other_agent: Any, alice: User) -> Seeded:
    """A ticket the agent's metrics opened, whose execution the agent has taken; a ticket
    waiting for people's approval; and one escalated to a person with no runbook."""
    [healing] = agent.post_metrics(agent.sample("disk")).json()["results"]
    [action] = agent.take_actions()
    # A problem seen on another host, resolved by hand, then reported by another system
    # without the opt-in: it waits for an approver.
    [seen] = other_agent.post_metrics(other_agent.sample("disk")).json()["results"]
    ticket = Ticket.objects.get(ticket_id=seen["ticket_id"])
    close_ticket(ticket, actor=alice, resolved=True, reason="cleaned by hand", now=timezone.now())
    for report in (
        ExternalTicket("OPS-1", other_agent.host.name, "disk", description="/var is full"),
        ExternalTicket("OPS-2", agent.host.name, "network", description="packets lost"),
    ):
        open_external_ticket(report, user=alice, now=timezone.now())
    approval = ApprovalRequest.objects.get(ticket__ticket_id="OPS-1")
    ticket_ids = [healing["ticket_id"], seen["ticket_id"], "OPS-1", "OPS-2"]
    tickets = [{"ticket_id": ticket_id} for ticket_id in ticket_ids]
    now = timezone.now()
    hosts = [agent.host.name, other_agent.host.name]
    return Seeded(
        paths={
            "/agent/actions/{execution_id}/result": [{"execution_id": action["execution_id"]}],
            "/approvals/{id}/approve": [{"id": approval.pk}],
            "/approvals/{id}/reject": [{"id": approval.pk}],
            "/executions/{id}/cancel": [{"id": action["execution_id"]}],
            "/tickets/{ticket_id}": tickets,
            "/tickets/{ticket_id}/approve-remediation": [{"ticket_id": "OPS-1"}],
            "/tickets/{ticket_id}/evidence": tickets,
            "/tickets/{ticket_id}/remediation-logs": tickets,
        },
        fields={
            "POST /api/v1/agent/actions/{execution_id}/result": {"token": st.just(action["token"])},
            "POST /api/v1/feedback": {"ticket_id": st.sampled_from(ticket_ids)},
            # Samples of the key's own host, taken in the last day.
            "POST /api/v1/metrics": {
                "host": st.just(agent.host.name),
                "taken_at": st.integers(0, 86_400).map(
                    lambda seconds: (now - timedelta(seconds=seconds)).isoformat()
                ),
            },
            # Alerts about the agents' hosts, by names Warden maps to a category.
            "POST /api/v1/alerts/alertmanager": {
                "alerts": st.lists(
                    st.fixed_dictionaries(
                        {
                            "status": st.sampled_from(["firing", "resolved"]),
                            "labels": st.fixed_dictionaries(
                                {
                                    "alertname": st.sampled_from(
                                        ["HostOutOfDiskSpace", "HostOutOfMemory", "Unmapped"]
                                    ),
                                    "instance": st.sampled_from(hosts).map(lambda h: f"{h}:9100"),
                                }
                            ),
                            "fingerprint": st.from_regex(r"[0-9a-f]{16}", fullmatch=True),
                        }
                    ),
                    min_size=1,
                    max_size=3,
                )
            },
            "POST /api/v1/alerts/webhook": {
                "id": st.from_regex(r"[a-z0-9-]{1,20}", fullmatch=True),
                "host": st.sampled_from(hosts),
                "category": st.sampled_from(["disk", "memory", "teapot"]),
                "status": st.sampled_from(["firing", "resolved"]),
            },
            "POST /api/v1/tickets": {
                "host": st.sampled_from([agent.host.name, other_agent.host.name]),
                "ticket_id": st.from_regex(TICKET_ID, fullmatch=True),
                "description": st.text(min_size=1, max_size=40),
            },
        },
        # The downloads: CSV and NDJSON are documented as text, JSON as an array of events.
        query={"GET /api/v1/audit-events": {"format": st.sampled_from(["csv", "json", "ndjson"])}},
    )


def with_fields(case: Any, fields: dict[str, Any], query: dict[str, Any]) -> Any:
    """`case` with `fields` set in its body (in each sample of a batch), and `query`."""
    body = case.body
    for item in body if isinstance(body, list) else [body]:
        if isinstance(item, dict):
            item.update(fields)
    if query:
        case.query = {**(case.query or {}), **query}
    return case


def authorization(operation: Any, token: str, host_key: str) -> dict[str, str]:
    """The header the operation's documented security scheme asks for."""
    requirements = operation.definition.raw.get("security", [])
    schemes = {name for requirement in requirements for name in requirement}
    if "hostKey" in schemes:
        return {"Authorization": f"Bearer {host_key}"}
    return {"Authorization": f"Token {token}"}


def strategies(operation: Any, seeded: Seeded) -> st.SearchStrategy:
    """Valid requests; valid ones about real objects; and invalid ones.

    Invalid requests keep a routable path (a real object's, or one of none): a path value
    outside its documented pattern never reaches the API, as Django's URL resolver answers
    it with its own page before any view runs.
    """
    real = seeded.paths.get(operation.path.removeprefix("/api/v1"), [])
    fields = seeded.fields.get(operation.label, {})
    query = seeded.query.get(operation.label, {})

    def about(mode: GenerationMode, paths: list[dict[str, Any]]) -> st.SearchStrategy:
        return st.sampled_from(paths).flatmap(
            lambda path: operation.as_strategy(mode, path_parameters=path)
        )

    options = [operation.as_strategy(GenerationMode.POSITIVE)]
    if real or fields or query:
        valid = about(GenerationMode.POSITIVE, real) if real else options[0]
        options.append(
            st.tuples(valid, st.fixed_dictionaries(fields), st.fixed_dictionaries(query)).map(
                lambda parts: with_fields(*parts)
            )
        )
    names = re.findall(r"\{(\w+)\}", operation.path)
    if not names:
        options.append(operation.as_strategy(GenerationMode.NEGATIVE))
    elif len(operation.query) or len(operation.headers) or operation.body:  # more to break
        missing = {name: MISSING.get(name, 999_999) for name in names}
        options.append(about(GenerationMode.NEGATIVE, [*real, missing]))
    return st.one_of(options)


def exercise(operation: Any, headers: dict[str, str], seeded: Seeded, tally: Tally) -> None:
    """Send the operation's generated requests, recording each answer and what it broke."""

    @given(case=strategies(operation, seeded))
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],  # failures are recorded, not raised: nothing to shrink
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        tally.cases += 1
        response = case.call(headers=headers)
        tally.statuses.setdefault(operation.label, Counter())[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except FailureGroup as group:
            for failure in group.exceptions:
                tally.record(failure, response.status_code, str(group))

    run()


def test_every_operation_answers_as_documented(
    wsgi_requests_keep_the_test_transaction: None, everyone: User, agent: Any, seeded: Seeded
) -> None:
    _, token = issue_api_token(
        everyone, actor=None, expiry_days=None, reason="conformance test", now=timezone.now()
    )
    schema = schemathesis.openapi.from_wsgi("/api/schema", application)
    tally = Tally()
    for result in schema.get_all_operations():
        operation = result.ok()
        tally.operations += 1
        exercise(operation, authorization(operation, token, agent.key), seeded, tally)

    print(tally.summary())
    for label, statuses in tally.statuses.items():
        print(f"  {label}: " + ", ".join(f"{n}x{code}" for code, n in sorted(statuses.items())))
    for (label, kind, status), report in tally.failures.items():
        print(f"--- {label}: {kind} on {status} (x{tally.seen[label, kind, status]})\n{report}")
    found = "; ".join(f"{label}: {kind} on {status}" for label, kind, status in tally.failures)
    assert not tally.failures, f"{tally.summary()}: {found}"
