"""simulate_policy NAME [--days N]: replay recent tickets through a policy, changing nothing."""

from django.core.management.base import CommandError, CommandParser
from django.utils import timezone

from config.commands import WardenCommand
from governance.decisions.simulation import (
    AUTO_HEALED,
    BLOCKED,
    RECORDED,
    TO_A_PERSON,
    simulate_policy,
)
from governance.models import Policy

ROWS = (AUTO_HEALED, TO_A_PERSON, BLOCKED, RECORDED)
MAX_DAYS = 3650  # far beyond any retention; keeps the date arithmetic in range
SHOW_CHANGED = 20


class Command(WardenCommand):
    help = (
        "Replay a period's tickets through a policy as a draft and print what it would have "
        "auto-healed, sent to a person or blocked, next to what actually happened. "
        "Changes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="the policy's name (it need not be enabled)")
        parser.add_argument(
            "--days", type=int, default=30, help=f"how far back to replay (1-{MAX_DAYS})"
        )

    def handle(self, *args, name: str, days: int, **options) -> None:
        if not 1 <= days <= MAX_DAYS:
            raise CommandError(f"--days must be between 1 and {MAX_DAYS}, not {days}")
        policy = Policy.objects.filter(name=name).first()
        if policy is None:
            known = ", ".join(Policy.objects.values_list("name", flat=True)) or "none"
            raise CommandError(f"no policy named {name!r} (policies: {known})")
        report = simulate_policy(policy, days=days, now=timezone.now())
        self.stdout.write(
            f"Policy {report.policy} (version {report.version}) over the last {days} days: "
            f"{report.tickets} tickets of category {policy.category}"
        )
        self.stdout.write(f"{'':18}{'draft':>8}{'actual':>8}")
        for row in ROWS:
            self.stdout.write(
                f"{row:18}{report.draft.get(row, 0):>8}{report.actual.get(row, 0):>8}"
            )
        held = ", ".join(report.held_by_blast_radius) or "none"
        self.stdout.write(f"Hosts the blast-radius limit would have held: {held}")
        for ticket_id, actual, draft in report.changed[:SHOW_CHANGED]:
            self.stdout.write(f"  {ticket_id}: {actual} -> {draft}")
        if len(report.changed) > SHOW_CHANGED:
            self.stdout.write(f"  ... and {len(report.changed) - SHOW_CHANGED} more changed")
