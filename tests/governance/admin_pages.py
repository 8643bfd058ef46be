"""Submit Django admin forms from a test the way a browser would."""

from typing import Any

from django import forms
from django.contrib.auth.models import User
from django.test import Client


def logged_in(user: User) -> Client:
    """A browser session of its own, so an agent's API calls never share its login."""
    browser = Client()
    browser.force_login(user)
    return browser


def form_data(page: Any, **changes: Any) -> dict[str, Any]:
    """What the admin form on `page` would post unchanged, with `changes` applied.

    A checkbox left unticked is not posted at all, as in a browser: pass False to untick.
    """
    form = page.context["adminform"].form
    data: dict[str, Any] = {}
    for name, field in form.fields.items():
        value = changes.get(name, form[name].value())
        if isinstance(field, forms.BooleanField):
            if value:
                data[name] = "on"
            continue
        if isinstance(field, forms.MultipleChoiceField):  # checkboxes: only the ticked ones
            if value:
                data[name] = list(value)
            continue
        data[name] = "" if value is None else value
    return data
