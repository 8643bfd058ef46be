"""Register COUNT hosts named PREFIX-00001 ... through Warden's own add_host (audited);
prints [[name, key], ...] as JSON. Run with the environment of the Warden under test."""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from django.utils import timezone  # noqa: E402

from remediation.actions import add_host  # noqa: E402


def main(prefix: str, count: int) -> None:
    hosts = []
    for i in range(1, count + 1):
        host, key = add_host(f"{prefix}-{i:05d}", now=timezone.now(), labels={"env": "bench"})
        hosts.append([host.name, key])
    json.dump(hosts, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
