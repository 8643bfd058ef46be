"""Tickets written in people's words, for the triage model's tests."""

from collections.abc import Callable
from itertools import count
from typing import Any

import pytest
from django.utils import timezone

from remediation.actions import add_host
from remediation.models import Execution, Runbook, Ticket

_numbers = count(1)


@pytest.fixture
def make_ticket(db: None) -> Callable[..., Ticket]:
    """make_ticket(title, description, category, status="resolved", fixed_by=None): a ticket on
    a host of its own; `fixed_by` names the runbook of its succeeded execution."""

    def make(
        title: str,
        description: str = "",
        category: str = "disk",
        status: str = "resolved",
        fixed_by: str | None = None,
        **fields: Any,
    ) -> Ticket:
        number = next(_numbers)
        host, _ = add_host(f"triage-host-{number}", now=timezone.now())
        ticket = Ticket.objects.create(
            ticket_id=f"TRI-{number}",
            title=title,
            description=description,
            category=category,
            status=status,
            host=host,
            **fields,
        )
        if fixed_by:
            Execution.objects.create(
                ticket=ticket,
                host=host,
                runbook=Runbook.objects.get(name=fixed_by),
                idempotency_key=f"triage-test-{number}",
                state="succeeded",
                finished_at=timezone.now(),
            )
        return ticket

    return make
