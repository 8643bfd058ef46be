"""Every API error is the API's JSON shape, whichever layer noticed it: a database that went
away under a plain Django view is a 503 with Retry-After (the agent keeps its samples and
sends them again), a failure no view answered is a 500 in the same shape; the console's pages
keep Django's HTML."""

import pytest
from django.db import OperationalError
from django.test import Client

from remediation.api import long_poll


@pytest.fixture
def unanswered_client(db) -> Client:
    """A client that sees what a server sends when a view raises, not the exception."""
    return Client(raise_request_exception=False)


def fail_with(monkeypatch, exc: Exception) -> None:
    def failing(*args, **kwargs):
        raise exc

    monkeypatch.setattr(long_poll, "start_poll", failing)


def test_an_unavailable_database_under_a_plain_view_is_a_json_503(unanswered_client, monkeypatch):
    # given the agents' poll, a plain Django view, meeting a database that went away
    fail_with(monkeypatch, OperationalError("connection failed: Connection refused"))

    # when an agent polls
    response = unanswered_client.get("/api/v1/agent/actions", {"wait": 0})

    # then it is told to come back, in the API's shape
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "database_unavailable"
    assert int(response["Retry-After"]) > 0


def test_a_failure_no_view_answered_is_a_json_500(unanswered_client, monkeypatch):
    fail_with(monkeypatch, RuntimeError("a bug"))

    response = unanswered_client.get("/api/v1/agent/actions", {"wait": 0})

    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "server_error"
    assert "a bug" not in error["message"]  # what failed is logged, not told


def test_the_console_keeps_its_html_error_page(unanswered_client, monkeypatch, alice):
    from governance.console import views

    def failing(*args, **kwargs):
        raise OperationalError("connection failed")

    monkeypatch.setattr(views, "render", failing)
    unanswered_client.force_login(alice)

    response = unanswered_client.get("/console/")

    assert response.status_code == 500
    assert response["Content-Type"].startswith("text/html")
