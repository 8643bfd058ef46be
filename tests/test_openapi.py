"""The OpenAPI schema covers every endpoint without warnings; the docs page serves offline."""

from django.core.management import call_command


def test_the_schema_validates_without_warnings(db, tmp_path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    schema = out.read_text()
    for path in (
        "/api/v1/metrics",
        "/api/v1/agent/actions",
        "/api/v1/approvals/{id}/approve",
        "/api/v1/tickets",
        "/api/v1/tickets/{ticket_id}",
        "/api/v1/tickets/{ticket_id}/remediation-logs",
        "/api/v1/tickets/{ticket_id}/approve-remediation",
        "/api/v1/feedback",
        "/api/v1/patterns",
        "/api/v1/stats/reliability",
        "/api/v1/stats/auto-remediation",
        "/api/v1/audit/public-key",
        "/api/v1/audit/public-key.pem",
        "/api/v1/audit/verifier.py",
    ):
        assert f"{path}:" in schema
    assert "hostKey" in schema  # agents' bearer key is documented
    assert "knoxApiToken" in schema  # and people's and services' tokens


def test_the_docs_page_needs_no_internet(client):
    page = client.get("/api/docs")
    assert page.status_code == 200
    assert b"cdn." not in page.content


def test_an_api_path_nothing_answers_is_a_json_error(client):
    response = client.get("/api/v1/tickets/not.a.ticket/evidence")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert client.get("/no-such-page").headers["Content-Type"].startswith("text/html")
