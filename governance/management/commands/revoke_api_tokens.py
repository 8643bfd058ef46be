"""manage.py revoke_api_tokens USERNAME: every API token of the user stops working at once."""

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError, CommandParser
from django.utils import timezone

from config.commands import WardenCommand
from governance.people.actions import revoke_api_tokens


class Command(WardenCommand):
    help = "Revoke every API token of a user (audited); exit 0 even when there were none."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", help="the user whose tokens stop working")
        parser.add_argument(
            "--reason",
            default="revoked with manage.py revoke_api_tokens",
            help="why, for the audit trail",
        )

    def handle(self, *args: Any, username: str, reason: str, **options) -> None:
        person = get_user_model().objects.filter(username=username).first()
        if person is None:
            raise CommandError(f"no user named {username}")
        try:
            count = revoke_api_tokens(person, actor=None, reason=reason, now=timezone.now())
        except ValidationError as exc:
            raise CommandError(exc.messages[0]) from exc
        self.stdout.write(f"{count} API token{'s' if count != 1 else ''} of {username} revoked.")
