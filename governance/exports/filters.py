"""Reading the audit export's filters from text (a query string or command options):
one readable error naming the field, shared by the API, the admin and the command."""

from collections.abc import Mapping
from datetime import datetime, time

from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from governance.exports.records import FORMATS, AuditFilter, ExportError

FILTER_FIELDS = ("since", "until", "ticket", "host", "actor", "action", "after")


def parse_instant(name: str, text: str) -> datetime:
    """An ISO 8601 time, or a date (its midnight), in the server's time zone if naive."""
    value = parse_datetime(text)
    if value is None and (day := parse_date(text)) is not None:
        value = datetime.combine(day, time.min)
    if value is None:
        raise ExportError(f"{name}: give an ISO 8601 date or time, not {text!r}")
    return timezone.make_aware(value) if timezone.is_naive(value) else value


def audit_filter(params: Mapping[str, str]) -> AuditFilter:
    """An AuditFilter from `params`; raises ExportError naming the field."""
    since = parse_instant("since", params["since"]) if params.get("since") else None
    until = parse_instant("until", params["until"]) if params.get("until") else None
    if since and until and until <= since:
        raise ExportError("until: must be after since")
    after = None
    if params.get("after"):
        if not params["after"].isdigit():
            raise ExportError(f"after: give a sequence number, not {params['after']!r}")
        after = int(params["after"])
    return AuditFilter(
        since=since,
        until=until,
        ticket=params.get("ticket", "").strip(),
        host=params.get("host", "").strip(),
        actor=params.get("actor", "").strip(),
        action=params.get("action", "").strip(),
        after=after,
    )


def export_format(text: str | None, default: str = "csv") -> str:
    fmt = (text or default).lower()
    if fmt not in FORMATS:
        raise ExportError(f"format: choose one of {', '.join(FORMATS)}, not {fmt!r}")
    return fmt
