"""The base of Warden's management commands: a bad argument is one readable line."""

import sys
from typing import Any, NoReturn

from django.core.management.base import BaseCommand, CommandParser


class WardenCommand(BaseCommand):
    """argparse prints its whole usage block before the error; operators get the error alone."""

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        if getattr(self, "_called_from_command_line", False):

            def error(message: str) -> NoReturn:
                sys.stderr.write(f"{prog_name} {subcommand}: {message} (see --help)\n")
                sys.exit(2)

            parser.error = error  # type: ignore[method-assign]
        return parser
