"""Governed rows are never deleted through the admin: generated from the admin registry, so
a model registered later is covered without editing this test."""

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.urls import reverse

# Execution mechanics: self-healing trusts from the first ticket (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("trusting_policies")

GOVERNED_APPS = ("governance", "remediation", "scoring", "feedback")
REGISTERED = sorted(
    (model for model in admin.site._registry if model._meta.app_label in GOVERNED_APPS),
    key=lambda model: model._meta.label,
)


@pytest.mark.parametrize("model", REGISTERED, ids=[m._meta.label for m in REGISTERED])
def test_not_even_a_superuser_deletes_a_governed_row(model, agent, client):
    agent.post_metrics(agent.sample("disk"))  # rows of most kinds, from a real flow
    root = User.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(root)
    opts = model._meta
    changelist = client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
    assert changelist.status_code == 200
    actions = admin.site._registry[model].get_actions(changelist.wsgi_request)
    assert "delete_selected" not in actions
    row = model.objects.first()
    if row is not None:
        before = model.objects.count()
        page = reverse(f"admin:{opts.app_label}_{opts.model_name}_delete", args=[row.pk])
        assert client.post(page, {"post": "yes"}).status_code == 403
        bulk = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        selected = {"action": "delete_selected", "_selected_action": [row.pk], "post": "yes"}
        client.post(bulk, selected)
        assert model.objects.count() == before
