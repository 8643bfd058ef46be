"""manage.py export_audit: the audit trail, filtered, as CSV, JSON or NDJSON, streamed, ending
with Warden's signed proof; the file is named by its filter and period unless -o says."""

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.audit.checkpoints import CheckpointRefused
from governance.exports.filters import FILTER_FIELDS, audit_filter, export_format
from governance.exports.records import FORMATS, ExportError, prepare
from governance.models import AuditEvent


class Command(BaseCommand):
    help = (
        "Export the audit trail with Warden's signed proof; anyone with Warden's public key "
        "verifies the file with verifier.py (or `manage.py verify_audit --file`)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--format", choices=list(FORMATS), default="csv")
        parser.add_argument(
            "--output",
            "-o",
            help="file to write (default: named by the filter and period, e.g. "
            "warden-audit_ticket-INC-000042_until-2026-12-06T14-54Z.csv; - for standard output)",
        )
        parser.add_argument("--since", help="from this time (ISO 8601 date or time)")
        parser.add_argument("--until", help="before this time")
        parser.add_argument("--ticket", help="one ticket, e.g. INC-000123")
        parser.add_argument("--host", help="events about a host and its tickets")
        parser.add_argument("--actor", help="e.g. user:alice, system, agent:web-01")
        parser.add_argument("--action", help="an event type, or its family (approval)")
        parser.add_argument("--after", help="records after this sequence")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            given = {name: options[name] for name in FILTER_FIELDS if options.get(name)}
            chosen = audit_filter(given)
            fmt = export_format(options["format"])
            export = prepare(chosen.apply(AuditEvent.objects.all()), fmt, chosen.described())
            output = options["output"] or export.filename
            if output == "-":
                out = sys.stdout
                for chunk in export.chunks():
                    out.write(chunk)
                return
            with open(output, "w", encoding="utf-8", newline="") as handle:
                handle.writelines(export.chunks())
            self.stderr.write(f"Wrote {output}")
        except (ExportError, CheckpointRefused, OSError) as exc:
            raise CommandError(str(exc)) from exc
