"""manage.py verify_audit: the whole audit chain, up to its head, or an export file or a
ticket's evidence JSON with the offline verifier (the same code auditors run); with --state,
also that every governed row equals its last audited state. Exit 0 intact, 1 broken, 2 a
file that cannot be verified."""

import re
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.audit import verifier
from governance.audit.log import verify_audit_log
from governance.audit.signing import public_key, public_key_from_raw_hex
from governance.audit.state_checks import record_current_states, state_report
from governance.models import AuditCheckpoint

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
            help="verify an export (export_audit, the admin or the API) or a ticket's evidence "
            "JSON instead of the database, as the offline verifier does: a full export proven "
            "complete up to its signed checkpoint, a filtered one record by record",
        )
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
            "--public-key",
            action="append",
            metavar="KEY.pem",
            help="with --file: check against this public key (repeat for older keys) instead "
            "of the keys this Warden signs with",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["file"]:
            self.verify_file(Path(options["file"]), options["public_key"])
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

    def verify_file(self, path: Path, given_keys: list[str] | None) -> None:
        """The offline verifier's check (governance/audit/verifier.py, the file auditors
        run), with Warden's public keys, or the ones given."""
        try:
            if given_keys:
                keys = [verifier.load_public_key(Path(name)) for name in given_keys]
            else:
                keys = warden_public_keys()
        except verifier.Unreadable as exc:
            raise CommandError(str(exc), returncode=verifier.UNVERIFIABLE) from exc
        report = verifier.verify_path(path, keys)
        for line in report.problems:
            self.stderr.write(f"{path.name}: {line}")
        if not report.ok:
            raise CommandError(
                f"{path.name}: NOT VERIFIED: {verifier.problems(report)}",
                returncode=report.status,
            )
        for line in report.lines:
            self.stdout.write(line)


def warden_public_keys() -> list:
    """The key Warden signs with now, and every key that signed a checkpoint before."""
    keys = {verifier.key_id(public_key()): public_key()}
    for raw in AuditCheckpoint.objects.values_list("public_key", flat=True).distinct():
        key = public_key_from_raw_hex(raw)
        keys.setdefault(verifier.key_id(key), key)
    return list(keys.values())
