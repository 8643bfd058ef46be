"""Change history for models people edit, attributed to people only.

Agents authenticate with a host key, so during their requests `request.user` is an
AgentPrincipal; their changes are recorded with no history user instead of failing.
"""

from functools import cache
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import models
from simple_history.manager import HistoryManager
from simple_history.models import HistoricalRecords


def person_behind(request: Any = None, **kwargs: Any) -> AbstractBaseUser | None:
    user = getattr(request, "user", None)
    return user if isinstance(user, AbstractBaseUser) else None


class HistoryManagerOnce(HistoryManager):
    """The library's manager, its class built once per queryset class.

    simple_history builds a new manager class on every read of `Model.history`, and on
    every history row it writes (inspecting each method of the queryset's class, about
    half a millisecond): a new ticket, its decision and its approval request did it six
    times a request.
    """

    @classmethod
    @cache
    def from_queryset(cls, queryset_class: type, class_name: str | None = None) -> type:
        return super().from_queryset(queryset_class, class_name)


def PersonHistory(**kwargs: Any) -> HistoricalRecords:
    # A change's reason is kept whole: people write up to 500 characters, and the
    # library's default column (100) refuses longer ones on PostgreSQL.
    return HistoricalRecords(
        get_user=person_behind,
        history_change_reason_field=models.TextField(null=True),
        history_manager=HistoryManagerOnce,
        **kwargs,
    )
