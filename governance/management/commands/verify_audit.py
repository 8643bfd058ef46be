"""manage.py verify_audit: the whole audit chain, up to its head, or an export file offline;
with --state, also that every governed row equals its last audited state. Exit 0 intact,
1 broken."""

import re
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.audit.log import verify_audit_log
from governance.audit.state_checks import record_current_states, state_report
from governance.exports.records import (
    FORMATS,
    ExportError,
    read_export,
    verify_export,
    verify_records,
)

SUFFIX_FORMAT = {".csv": "csv", ".json": "json", ".ndjson": "ndjson", ".jsonl": "ndjson"}

PUBLISHED_HEAD = re.compile(r"^(\d+):([0-9a-f]{64})$")


class Command(BaseCommand):
    help = (
        "Verify the audit log from its first event to the chain head; with --expect, also "
        "against a head published earlier (the checkpoint log line or the /metrics gauge)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--expect",
            metavar="SEQUENCE:HASH",
            help="a head published earlier, which the log must still contain",
        )
        parser.add_argument(
            "--file",
            metavar="EXPORT",
            help="verify an export (export_audit, the admin or the API) instead of the database",
        )
        parser.add_argument("--format", choices=list(FORMATS), help="the file's (default: suffix)")
        parser.add_argument(
            "--state",
            action="store_true",
            help="also prove every policy, runbook, approval, execution, pause and access "
            "right equals its last audited state, naming each row that differs",
        )
        parser.add_argument(
            "--record-state",
            metavar="REASON",
            help="after --state named rows an operator has checked, record their present "
            "state in the log (one audited event each, with this reason)",
        )
        parser.add_argument(
            "--records",
            action="store_true",
            help="a filtered export: check each record's HMAC (gaps between them are expected)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["file"]:
            self.verify_file(
                Path(options["file"]), options["format"], options["expect"], options["records"]
            )
            return
        expected = None
        if options["expect"]:
            match = PUBLISHED_HEAD.match(options["expect"].strip())
            if not match:
                raise CommandError("--expect must be SEQUENCE:HASH (64 hex digits)")
            expected = (int(match[1]), match[2])
        report = verify_audit_log(expected)
        if not report.intact:
            # One line, exit status 1: what a cron job or a compliance script reads.
            raise CommandError(report.line, returncode=1)
        self.stdout.write(report.line)
        if options["record_state"] is not None:
            try:
                recorded = record_current_states(reason=options["record_state"])
            except ValidationError as refused:
                raise CommandError(
                    "--record-state: say why (the reason goes into the log)"
                ) from refused
            self.stdout.write(f"Recorded the present state of {recorded} rows in the audit log.")
        elif options["state"]:
            differences = state_report()
            if differences:
                # One line per row, then the verdict: the rows to look at, exit status 1.
                for line in differences:
                    self.stderr.write(line)
                raise CommandError(
                    f"Governed state BROKEN: {len(differences)} rows differ from their last "
                    "audited state.",
                    returncode=1,
                )
            self.stdout.write("Governed state intact: every governed row is as last audited.")

    def verify_file(self, path: Path, fmt: str | None, expect: str | None, records: bool) -> None:
        fmt = fmt or SUFFIX_FORMAT.get(path.suffix.lower())
        if fmt is None:
            raise CommandError(f"{path}: say --format (csv, json or ndjson)")
        try:
            with path.open(encoding="utf-8", newline="") as handle:
                if records:
                    report = verify_records(read_export(handle, fmt))
                    if report.intact:
                        self.stdout.write(
                            f"Export records authentic: {report.checked} records carry "
                            "Warden's HMAC (a filtered export: completeness not checked)."
                        )
                        return
                    first = None
                else:
                    report, first = verify_export(read_export(handle, fmt))
        except (ExportError, OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"{path}: {exc}") from exc
        if not report.intact:
            raise CommandError(
                f"Export BROKEN at #{report.first_broken_sequence}: {report.problem}", returncode=1
            )
        if expect:
            match = PUBLISHED_HEAD.match(expect.strip())
            if not match or (int(match[1]), match[2]) != (report.head_sequence, report.head_hash):
                raise CommandError(
                    f"Export ends at #{report.head_sequence} {report.head_hash[:16]}, "
                    f"not at the expected {expect.strip()[:24]}",
                    returncode=1,
                )
        span = f"#{first}-#{report.head_sequence}" if first is not None else "empty"
        self.stdout.write(
            f"Export intact: {report.checked} events {span} link and carry Warden's HMAC; "
            f"last hash {report.head_hash[:16]}."
        )
