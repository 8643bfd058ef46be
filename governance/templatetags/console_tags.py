"""Filters of the live console."""

from datetime import datetime, timedelta

from django import template
from django.utils.timesince import timesince

register = template.Library()


@register.filter
def age(value: datetime | None, now: datetime) -> str:
    """How long ago `value` was, as people say it ("under a minute", "3 minutes")."""
    if value is None:
        return "never"
    if now - value < timedelta(minutes=1):
        return "under a minute"
    return timesince(value, now, depth=1)
