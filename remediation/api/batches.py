"""Reading an agent's batch of samples: the body straight to Readings, errors naming the field.

Every agent posts every few seconds, so this is the API's hottest path. DRF's
serializer costs ~50 microseconds per sample (5 ms for a batch of 100, more than
everything else Warden does with it); pydantic parses and checks the raw JSON in
~2 (bench/bench_serving.py). The errors keep the API's one shape
(config/api_errors.py): {"error": {"code": "invalid", "fields": {"[3].cpu_usage": [...]}}}.
"""

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from django.conf import settings
from django.utils import timezone
from pydantic import BaseModel, ConfigDict, Field, RootModel, TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from rest_framework import exceptions

from scoring.features import Reading

# Agents' clocks drift: a sample stamped ahead of the server is kept and judged on the
# server's clock (scoring.samples); one further ahead than WARDEN_CLOCK_AHEAD_LIMIT_SECONDS
# comes from a broken clock, and is refused.
# An agent buffers while it cannot reach Warden; older than this, a clock is wrong. Never
# older than samples are kept (WARDEN_SAMPLE_RETENTION_DAYS): such a reading would be
# removed at once, and on PostgreSQL its day's partition is gone (scoring.partitions).
MAX_SAMPLE_AGE = timedelta(days=30)


def max_sample_age() -> timedelta:
    return min(MAX_SAMPLE_AGE, timedelta(days=settings.WARDEN_SAMPLE_RETENTION_DAYS))


# strict: a JSON number only ("95" and true are type errors); no NaN or infinity.
Percent = Annotated[float, Field(ge=0, le=100, strict=True, allow_inf_nan=False)]


class PostedSample(BaseModel):
    """One reading as an agent posts it."""

    model_config = ConfigDict(extra="ignore")

    host: Annotated[str, Field(min_length=1, max_length=253, strict=True)]
    # strict on JSON input: an RFC 3339 string, not a number of seconds
    taken_at: Annotated[datetime, Field(strict=True)]
    disk_usage: Percent
    memory_usage: Percent
    cpu_usage: Percent
    dns_latency_ms: Annotated[float, Field(ge=0, le=600_000, strict=True, allow_inf_nan=False)]
    firewall_change_requested: Annotated[int, Field(ge=0, le=1, strict=True)] = Field(
        description="1 when someone asks for a firewall change on the host, else 0"
    )


class PostedBatch(RootModel[list[PostedSample] | PostedSample]):
    """One sample, or a list of at most WARDEN_MAX_BATCH (the OpenAPI schema's request)."""


_ONE = TypeAdapter(PostedSample)
_MANY = TypeAdapter(list[PostedSample])


def parse_batch(body: bytes) -> tuple[list[Reading], bool]:
    """The readings in `body` (one sample object or a list of them), and whether it was a list.

    Raises DRF's ValidationError naming each bad field ("[2].cpu_usage", or
    "cpu_usage" for a single object), or ParseError for a body that is not JSON.
    """
    start = body.lstrip()[:1]
    if start not in (b"[", b"{"):
        if start and not _is_json(body):
            raise exceptions.ParseError("JSON parse error - the body is not JSON.")
        raise exceptions.ValidationError({"samples": ["Send a sample object or a list of them."]})
    many = start == b"["
    try:
        parsed = _MANY.validate_json(body) if many else [_ONE.validate_json(body)]
    except PydanticValidationError as exc:
        raise _field_errors(exc, many) from None
    if not parsed:
        raise exceptions.ValidationError({"samples": ["The batch is empty."]})
    if len(parsed) > settings.WARDEN_MAX_BATCH:
        raise exceptions.ValidationError(
            {
                "samples": [
                    f"At most {settings.WARDEN_MAX_BATCH} samples per request, got {len(parsed)}."
                ]
            }
        )
    now = timezone.now()
    ahead_limit = timedelta(seconds=settings.WARDEN_CLOCK_AHEAD_LIMIT_SECONDS)
    max_age = max_sample_age()
    readings, errors = [], {}
    for i, sample in enumerate(parsed):
        taken_at = sample.taken_at
        # A time without an offset is in TIME_ZONE, as Django reads one; kept in UTC.
        if timezone.is_naive(taken_at):
            taken_at = timezone.make_aware(taken_at)
        taken_at = taken_at.astimezone(UTC)
        if taken_at > now + ahead_limit:
            errors[_path(i, "taken_at", many)] = [
                f"taken_at is more than {_duration(ahead_limit)} ahead of the server's clock; "
                "set the host's clock right."
            ]
        elif taken_at < now - max_age:
            errors[_path(i, "taken_at", many)] = [
                f"taken_at is more than {max_age.days} days in the past."
            ]
        readings.append(
            Reading(
                host=sample.host,
                taken_at=taken_at,
                disk_usage=sample.disk_usage,
                memory_usage=sample.memory_usage,
                cpu_usage=sample.cpu_usage,
                dns_latency_ms=sample.dns_latency_ms,
                firewall_change_requested=sample.firewall_change_requested,
            )
        )
    if errors:
        raise exceptions.ValidationError(errors)
    return readings, many


def _duration(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"


def _path(index: int, name: str, many: bool) -> str:
    return f"[{index}].{name}" if many else name


def _field_errors(exc: PydanticValidationError, many: bool) -> exceptions.APIException:
    fields: dict[str, list[str]] = {}
    for error in exc.errors(include_url=False, include_input=False):
        if error["type"] in ("json_invalid", "recursion_loop"):
            detail = error.get("ctx", {}).get("error", error["msg"])
            if "recursion" in str(detail).lower():
                return exceptions.ParseError("JSON parse error - nested too deeply.")
            return exceptions.ParseError(f"JSON parse error - {detail}.")
        location: tuple[Any, ...] = tuple(error["loc"])
        if many and location and isinstance(location[0], int):
            index, *names = location
            path = f"[{index}]" + "".join(f".{name}" for name in names)
        elif many and location:
            path = "samples"  # the body is a list, but an item is not a sample object
        else:
            path = ".".join(str(name) for name in location) or "samples"
        if error["type"] in ("model_type", "model_attributes_type", "list_type"):
            message = "Send a sample object or a list of them."
        else:
            message = error["msg"] + "."
        fields.setdefault(path, []).append(message)
    return exceptions.ValidationError(fields)


def _is_json(body: bytes) -> bool:
    try:
        TypeAdapter(Any).validate_json(body)
    except PydanticValidationError:
        return False
    return True
