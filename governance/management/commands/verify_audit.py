"""manage.py verify_audit: the whole audit chain, up to its head; exit 0 intact, 1 broken."""

import re
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.audit import verify_audit_log

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

    def handle(self, *args: Any, **options: Any) -> None:
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
