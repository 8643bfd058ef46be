#!/usr/bin/env python
"""Django's command-line utility for Warden."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        # Unsafe or invalid configuration: one readable line, non-zero exit.
        sys.exit(f"warden: configuration error: {exc}")


if __name__ == "__main__":
    main()
