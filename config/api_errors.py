"""One error shape for the whole API: {"error": {"code", "message", "fields"}}.

`fields` maps a field path ("disk_usage", "[3].taken_at") to its messages, so a
client sees which field of which sample was wrong.

This is the one place a refusal becomes HTTP: an action's refusal
(governance.audit.errors.Refused) answers with its family's status and its code, a 400
as a validation error naming its fields; Django's ValidationError and PermissionDenied,
which the actions' shared checks raise, answer 400 and 403. The API views let them
propagate. A view whose request names a field otherwise than the action does (the
action's "change_reason" is the request's "comment") says so in `request_fields`.
What no view answered (the long poll's own errors, an exception under a plain Django
view) gets the same shape through `error_answer`: a database that is unavailable is a 503
with Retry-After wherever it is noticed, anything else a 500.
"""

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from django.http import Http404
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.views import exception_handler

from governance.audit.errors import Refused

logger = logging.getLogger("warden.api")


def flatten_errors(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """Turn DRF's nested error detail into {"path.to.field": [messages]}."""
    if isinstance(detail, dict):
        flat: dict[str, list[str]] = {}
        for key, value in detail.items():
            if isinstance(key, int):  # ListSerializer keys its errors by item index
                path = f"{prefix}[{key}]"
            else:
                name = "" if key == "non_field_errors" else str(key)
                path = f"{prefix}.{name}" if prefix and name else (prefix or name)
            flat.update(flatten_errors(value, path))
        return flat
    if isinstance(detail, list) and any(isinstance(item, dict | list) for item in detail):
        flat = {}
        for index, item in enumerate(detail):
            flat.update(flatten_errors(item, f"{prefix}[{index}]"))
        return flat
    messages = detail if isinstance(detail, list) else [detail]
    return (
        {prefix or "non_field": [str(message) for message in messages if str(message)]}
        if messages
        else {}
    )


class DatabaseUnavailable(exceptions.APIException):
    """The database is locked past its timeout, out of pooled connections, or down: the
    request changed nothing (its transaction rolled back), so the agent sends it again."""

    status_code = 503
    default_code = "database_unavailable"
    default_detail = "The database is busy or unreachable; nothing was stored. Retry shortly."


class Refusal(exceptions.APIException):
    """An action's refusal as DRF answers it: the refusal's status, code and fields."""

    def __init__(self, refused: Refused, fields: dict[str, list[str]]) -> None:
        super().__init__(refused.message, refused.code)
        self.status_code = refused.status
        self.fields = fields


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="machine-readable: invalid, not_found, conflict...")
    message = serializers.CharField()
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text='each field at fault ("ticket_id", "[3].cpu_usage") and its messages',
    )


class ErrorSerializer(serializers.Serializer):
    """The API's one error shape, for the OpenAPI schema."""

    error = ErrorDetailSerializer()


# What each error status means anywhere in the API, as the OpenAPI schema says it.
ERROR_MEANINGS = {
    400: "invalid: `fields` names each field at fault",
    401: "not_authenticated or authentication_failed: no valid credentials were sent",
    403: "permission_denied: the caller may not do this",
    404: "not_found: no such object",
    409: "conflict: the request collides with what is stored; nothing was changed",
    503: "unavailable: nothing was stored; send it again after Retry-After",
}


def error_responses(*statuses: int) -> dict[int, OpenApiResponse]:
    """The API's error shape under each of `statuses`, for extend_schema(responses=...)."""
    return {
        status: OpenApiResponse(ErrorSerializer, description=ERROR_MEANINGS[status])
        for status in statuses
    }


RETRY_AFTER_SECONDS = 5


def request_names(fields: dict[str, list[str]], view: Any) -> dict[str, list[str]]:
    """`fields` keyed by the request's names for them (the view's `request_fields`)."""
    names = getattr(view, "request_fields", {})
    return {names.get(name, name): messages for name, messages in fields.items()}


def as_api_exception(exc: Refused | DjangoValidationError, view: Any) -> exceptions.APIException:
    """A refusal, or Django's ValidationError, as the DRF exception that answers it."""
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"non_field": exc.messages}
        return exceptions.ValidationError(request_names(detail, view))
    fields = request_names(exc.fields or {}, view)
    if exc.status == 400:
        return exceptions.ValidationError(fields or {"non_field": [exc.message]})
    return Refusal(exc, fields)


def warden_exception_handler(exc: Exception, context: dict) -> Response | None:
    # OperationalError: down, out of connections, the pool's wait over, SQLite locked;
    # InterfaceError: a connection that closed under the request.
    if isinstance(exc, OperationalError | InterfaceError):
        logger.warning("API request refused, database unavailable: %s", exc)
        exc = DatabaseUnavailable()
        exc.wait = RETRY_AFTER_SECONDS  # DRF sends it as Retry-After
    if isinstance(exc, RequestDataTooBig):  # Django refuses the body before any parser runs
        exc = exceptions.ValidationError(
            {
                "samples": [
                    f"The body is over {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes: send at "
                    f"most {settings.WARDEN_MAX_BATCH} samples per request."
                ]
            }
        )
    if isinstance(exc, Refused | DjangoValidationError):
        exc = as_api_exception(exc, context.get("view"))
    # As DRF's handler would, but before reading the code: "not_found", not "error".
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(*exc.args)
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(*exc.args)
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        fields = {path: msgs for path, msgs in flatten_errors(exc.detail).items() if msgs}
        first = next(iter(fields.items()), ("", ["invalid input"]))
        message = (
            f"{first[0]}: {first[1][0]}" if first[0] and first[0] != "non_field" else first[1][0]
        )
        body = {"error": {"code": "invalid", "message": message, "fields": fields}}
    else:
        detail = getattr(exc, "detail", str(exc))
        code = getattr(detail, "code", None) or getattr(exc, "default_code", "error")
        fields = getattr(exc, "fields", None) or {}
        body = {"error": {"code": code, "message": str(detail), "fields": fields}}
    response.data = body
    return response


def error_answer(exc: BaseException | None) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, body, headers) of any exception, in the API's shape: as the handler answers
    it (a database unavailable: 503 with Retry-After), else a 500 that is logged."""
    response = warden_exception_handler(exc, {}) if isinstance(exc, Exception) else None
    if response is None:
        logger.error("API request failed", exc_info=exc)
        message = "Warden failed to answer this request; it was logged. Retry later."
        return 500, {"error": {"code": "server_error", "message": message, "fields": {}}}, {}
    headers = {name: response[name] for name in ("Retry-After",) if response.has_header(name)}
    return response.status_code, response.data, headers
