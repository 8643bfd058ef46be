"""manage.py add_person NAME --role ROLE --email ADDR: a person who can sign in, in a role.

The person is staff (the admin lets in no one else), in the role's group, with the email
their notices go to. Their password is printed once; with --set-password-link they get a
link instead, which works until they set a password. Audited like every access change, as
"system" with the reason naming who ran the command (like create_api_token).
"""

import getpass
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import CommandError, CommandParser
from django.utils import timezone

from config.commands import WardenCommand
from governance.audit.errors import Invalid
from governance.people import onboarding
from governance.people.onboarding import ROLE_DUTIES, ROLES


def operator() -> str:
    """Who runs the command, as the operating system knows them."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name for this uid (a container)
        return "an unnamed operator"


class Command(WardenCommand):
    help = (
        "Add a person in a role (supervisor, approver or compliance): staff, so they can sign "
        "in, with the email notices go to. Prints their password once, or with "
        "--set-password-link a link where they set it. Roles: "
        + "; ".join(f"{role}: {duty}" for role, duty in ROLE_DUTIES.items())
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="their username")
        # Checked by the use case, not argparse: its refusal is one line naming the roles.
        parser.add_argument("--role", required=True, help=f"one of: {', '.join(ROLES)}")
        parser.add_argument("--email", required=True, help="where their notices go")
        parser.add_argument(
            "--set-password-link",
            action="store_true",
            help="print a link where they set their own password (it works once) instead "
            "of a password",
        )
        parser.add_argument(
            "--add-role",
            action="store_true",
            help="NAME exists: give them this role too (and staff status)",
        )
        parser.add_argument("--reason", default="", help="why, for the audit trail")

    def handle(
        self,
        *args: Any,
        name: str,
        role: str,
        email: str,
        set_password_link: bool,
        add_role: bool,
        reason: str,
        **options: Any,
    ) -> None:
        ran_by = f"manage.py add_person, run by {operator()}"
        why = f"{reason.strip()} ({ran_by})" if reason.strip() else f"added with {ran_by}"
        try:
            added = onboarding.add_person(
                name,
                role=role,
                email=email,
                actor=None,
                reason=why,
                now=timezone.now(),
                set_password_link=set_password_link,
                add_role=add_role,
            )
        except (Invalid, ValidationError, PermissionDenied) as exc:
            raise CommandError(getattr(exc, "messages", [str(exc)])[0]) from exc
        person = added.person
        who = f"{person.get_username()} <{person.email}>"
        if not added.created:
            self.stdout.write(f"{who} is now also in the {ROLES[role]} role (staff).")
            return
        self.stdout.write(f"Added {who} in the {ROLES[role]} role (staff).")
        if added.password:
            self.stdout.write(f"Password (shown once): {added.password}")
        else:
            link = onboarding.set_password_link(person)
            self.stdout.write(f"Set-password link (works once): {link}")
