"""Refusals: what an action raises when it will not do what was asked.

A refusal changes nothing and says why: `code` for machines ("not_pending",
"stale_token"), `message` for people, and `fields` when the fault lies in named fields
(each with its messages). Every domain error (ApprovalError, ExecutionError, ...) derives
from one of the families here, and each family carries its HTTP status as a class
attribute, so config/api_errors.py turns any refusal into the API's error shape without
knowing the domain's classes, while the admin, the console and the commands show
`message`. A family whose codes mean different things says so in `status_by_code`
(an ExecutionError "not_found" is a 404, the others are conflicts).
"""

from collections.abc import Mapping
from typing import ClassVar


class Refused(Exception):
    """An action refused; nothing was changed. `status` is the HTTP status it answers with."""

    status: int = 400
    # Codes of this family whose HTTP status is not the family's.
    status_by_code: ClassVar[Mapping[str, int]] = {}

    def __init__(self, code: str, message: str, fields: dict[str, list[str]] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.fields = fields
        self.status = self.status_by_code.get(code, type(self).status)


class Invalid(Refused):
    """What was asked is malformed or incomplete: `fields` names what to fix."""

    status = 400


class Forbidden(Refused):
    """The person may not do this (not their role, their own request, not listed)."""

    status = 403


class NotFound(Refused):
    """What the action is about does not exist (or is not the kind asked for)."""

    status = 404


class Conflict(Refused):
    """What is stored does not allow it now (already decided, finished, stale)."""

    status = 409


class Unavailable(Refused):
    """Something the action needs is not there right now; asking again later may work."""

    status = 503
