"""Register COUNT hosts named PREFIX-00001 ... through Warden's own add_host (audited);
prints [[name, key], ...] as JSON. Run with the environment of the Warden under test.

A thousand hosts to a transaction: a fleet of 10,000 registers in a minute, not one
commit and one turn of the audit chain's lock per host."""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from django.db import transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from remediation.actions import add_host  # noqa: E402


def main(prefix: str, count: int) -> None:
    hosts = []
    for first in range(1, count + 1, 1000):
        with transaction.atomic():
            for i in range(first, min(first + 1000, count + 1)):
                name = f"{prefix}-{i:05d}"
                host, key = add_host(name, now=timezone.now(), labels={"env": "bench"})
                hosts.append([host.name, key])
    json.dump(hosts, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
