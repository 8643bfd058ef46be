"""Concurrent requests on PostgreSQL: one host's simultaneous batches open one ticket, not two."""

import json
import threading

import pytest
from django.db import connections
from django.test import Client

from remediation.hosts import add_host
from remediation.models import Ticket
from tests.conftest import HEALTHY, PROBLEMS


# Serialized rollback: the rows migrations seed (roles, the audit chain's head) come back.
@pytest.mark.integration
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_simultaneous_batches_showing_a_new_problem_share_one_ticket(servers, approved_model):
    # given a host whose agent (retrying, or several collectors) posts six batches at once
    host, key = add_host("burst-01")
    start = threading.Barrier(6)
    statuses: list[int] = []

    def post(second: int) -> None:
        sample = {
            "host": host.name,
            "taken_at": f"2026-11-25T10:00:{second:02d}Z",
            **HEALTHY,
            **PROBLEMS["disk"],
        }
        try:
            start.wait()
            response = Client().post(
                "/api/v1/metrics",
                data=json.dumps(sample),
                content_type="application/json",
                HTTP_AUTHORIZATION=f"Bearer {key}",
            )
            statuses.append(response.status_code)
        finally:
            connections.close_all()

    # when they arrive together
    threads = [threading.Thread(target=post, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # then every batch is stored and counted on the one disk ticket
    assert statuses == [201] * 6
    [ticket] = Ticket.objects.filter(host=host, category="disk")
    assert ticket.occurrence_count == 6
