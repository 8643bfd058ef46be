from django.core.management.base import CommandError
from django.utils import timezone

from config.commands import WardenCommand
from remediation.actions import HostError, add_host, rotate_host_key
from remediation.models import Host


def parse_label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise CommandError(f"label {text!r} must be key=value")
    return key, value


class Command(WardenCommand):
    help = "Register a host and print its agent's API key (shown once; only a hash is stored)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="the host's name, as its agent reports it")
        parser.add_argument(
            "--label", action="append", default=[], help="key=value, may be repeated"
        )
        parser.add_argument(
            "--rotate-key", action="store_true", help="give an existing host a new key"
        )

    def handle(self, *args, name: str, label: list[str], rotate_key: bool, **options) -> None:
        now = timezone.now()
        try:
            if rotate_key:
                host = Host.objects.filter(name=name).first()
                if host is None:
                    raise CommandError(f"no host named {name}")
                key = rotate_host_key(host, now=now)
            else:
                labels = dict(parse_label(item) for item in label)
                host, key = add_host(name, now=now, labels=labels)
        except HostError as exc:
            raise CommandError(str(exc)) from exc
        self.stderr.write(f"Host {host.name} registered. Its agent key (shown once):")
        self.stdout.write(key)
