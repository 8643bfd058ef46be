"""`manage.py add_host NAME` registers a host and prints its key once; only a hash is kept."""

import io

import pytest
from django.core.management import CommandError, call_command

from remediation.models import Host, hash_api_key


def add_host(*args: str) -> str:
    out = io.StringIO()
    call_command("add_host", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue().strip()


def test_it_prints_a_key_that_authenticates_and_stores_only_its_hash(db, client):
    key = add_host("db-07", "--label", "env=prod")
    host = Host.objects.get(name="db-07")
    assert host.labels == {"env": "prod"}
    assert host.api_key_hash == hash_api_key(key)
    assert key not in str(Host.objects.values().get())
    response = client.get("/api/v1/agent/actions", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 200


def test_rotating_the_key_retires_the_old_one(db, client):
    old = add_host("db-07")
    new = add_host("db-07", "--rotate-key")
    assert old != new
    assert (
        client.get("/api/v1/agent/actions", HTTP_AUTHORIZATION=f"Bearer {old}").status_code == 401
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["db-07"], "already exists"),
        (["bad name!"], "not a valid host name"),
        (["db-08", "--label", "env"], "must be key=value"),
        (["nobody", "--rotate-key"], "no host named"),
    ],
)
def test_bad_requests_exit_with_one_readable_line(db, args, message):
    add_host("db-07")
    with pytest.raises(CommandError, match=message):
        add_host(*args)
