"""Fixtures the remediation tests share."""

import pytest
from django.contrib.auth.models import Group, User

from tests.conftest import Api


@pytest.fixture
def sender(db, api) -> Api:
    """Alertmanager's token, issued to a service user in the alert senders role."""
    service = User.objects.create_user("alertmanager")
    service.groups.add(Group.objects.get(name="alert senders"))
    return api(service)
