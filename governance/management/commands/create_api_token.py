"""manage.py create_api_token USERNAME: issue an API token and print it once.

A USERNAME nobody has yet is an integrator's: it is created in the integrators role (the
seed's API needs nothing else), and the command says so."""

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError, CommandParser
from django.utils import timezone

from config.commands import WardenCommand
from governance.people.actions import (
    MAX_EXPIRY_DAYS,
    SERVICE_ROLES,
    TokenError,
    add_service_user,
    issue_api_token,
)

DEFAULT_EXPIRY_DAYS = 90
# Who a new name is: a system opening tickets through the seed's API.
NEW_USERS_ROLE = "integrators"


class Command(WardenCommand):
    help = (
        "Issue an API token to a user (a person, or a service user in the integrators role) "
        "and print it once: only its hash is stored. Send it as `Authorization: Token KEY`; "
        "it may do what the user's roles allow. A name no user has yet is created as a "
        "service user in the integrators role."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", help="the user the token acts as")
        parser.add_argument(
            "--expiry-days",
            type=int,
            default=DEFAULT_EXPIRY_DAYS,
            metavar="N",
            help=f"days until it expires, 1 to {MAX_EXPIRY_DAYS}; 0: until revoked "
            f"(default {DEFAULT_EXPIRY_DAYS})",
        )
        parser.add_argument(
            "--service",
            metavar="ROLE",
            choices=SERVICE_ROLES,
            help="a service's token: create USERNAME in ROLE if it does not exist "
            f"({', '.join(repr(r) for r in SERVICE_ROLES)}), with no password",
        )
        parser.add_argument(
            "--reason",
            default="issued with manage.py create_api_token",
            help="why, for the audit trail",
        )

    def handle(
        self,
        *args: Any,
        username: str,
        expiry_days: int,
        reason: str,
        service: str | None,
        **options,
    ) -> None:
        if expiry_days < 0:
            raise CommandError("--expiry-days must be 0 (until revoked) or more")
        now = timezone.now()
        try:
            person = get_user_model().objects.filter(username=username).first()
            if service or person is None:
                role = service or NEW_USERS_ROLE
                if person is None:
                    self.stderr.write(
                        f"No user named {username}: created {username} as a service user in "
                        f"the {role} role (it opens tickets; it never approves)."
                    )
                person = add_service_user(username, actor=None, reason=reason, now=now, role=role)
            token, key = issue_api_token(
                person, actor=None, reason=reason, now=now, expiry_days=expiry_days or None
            )
        except (TokenError, ValidationError) as exc:
            raise CommandError(getattr(exc, "messages", [str(exc)])[0]) from exc
        lasts = f"until {token.expiry:%Y-%m-%d %H:%M} UTC" if token.expiry else "until revoked"
        self.stderr.write(f"API token for {username}, valid {lasts} (shown once):")
        self.stdout.write(key)
