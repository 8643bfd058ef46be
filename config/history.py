"""Change history for models people edit, attributed to people only.

Agents authenticate with a host key, so during their requests `request.user` is an
AgentPrincipal; their changes are recorded with no history user instead of failing.
"""

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import models
from simple_history.models import HistoricalRecords


def person_behind(request: Any = None, **kwargs: Any) -> AbstractBaseUser | None:
    user = getattr(request, "user", None)
    return user if isinstance(user, AbstractBaseUser) else None


def PersonHistory(**kwargs: Any) -> HistoricalRecords:
    # A change's reason is kept whole: people write up to 500 characters, and the
    # library's default column (100) refuses longer ones on PostgreSQL.
    return HistoricalRecords(
        get_user=person_behind,
        history_change_reason_field=models.TextField(null=True),
        **kwargs,
    )
