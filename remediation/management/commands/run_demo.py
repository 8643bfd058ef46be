"""`make demo`: migrate, train and approve a first model, create accounts, run everything.

Starts gunicorn (uvicorn workers, so websockets work), a qcluster and a
synthetic fleet of simulated agents, prints the URLs, and stops every process
it started on Ctrl-C. A second run reuses the database, model, accounts and keys.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction
from django.utils import timezone

from config.commands import WardenCommand
from feedback.models import Pattern
from feedback.patterns import is_known_good
from governance.people.onboarding import ROLES, add_person
from remediation.actions import add_host, rotate_host_key
from remediation.demo_history import PAST_PROBLEMS, record_track_record
from remediation.models import Host
from scoring.choices import ModelStatus
from scoring.models import ModelVersion, TriageModelVersion

# The seed's scenarios across the demo fleet: mostly healthy, every problem present.
FLEET_SCENARIOS = (
    ["disk_filling"] * 3
    + ["memory_leak"] * 3
    + ["cpu_runaway"] * 2
    + ["dns_latency_spike"] * 2
    + ["firewall_change_request"] * 2
)
# Ordinary people in their roles (no superuser), each with an email so they hear of what
# concerns them; the demo's mail is written to files under the data folder (MAIL_FOLDER).
ACCOUNTS = (
    ("supervisor", "supervisor", "supervisor@example.com"),
    ("approver", "approver", "approver@example.com"),
    ("compliance", "compliance", "compliance@example.com"),
)
MAIL_FOLDER = "mail"


class Command(WardenCommand):
    help = "Set up Warden and run it with a synthetic fleet (web, qcluster, agents)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--hosts", type=int, default=20, help="size of the demo fleet")
        parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
        parser.add_argument("--web-workers", type=int, default=2)
        parser.add_argument(
            "--setup-only", action="store_true", help="prepare everything, start nothing"
        )

    def handle(self, *args, **options) -> None:
        if options["hosts"] < 1:
            raise CommandError("--hosts must be at least 1")
        self.stdout.write("Migrating the database ...")
        call_command("migrate", interactive=False, verbosity=0)
        # The admin's styles and scripts, served by whitenoise from STATIC_ROOT.
        call_command("collectstatic", interactive=False, verbosity=0)
        if not ModelVersion.objects.filter(status=ModelStatus.APPROVED).exists():
            self.stdout.write("Training and approving a first severity model ...")
            call_command("train_severity_model", approve=True, stdout=self.stdout)
        if not TriageModelVersion.objects.filter(status=ModelStatus.APPROVED).exists():
            self.stdout.write("Training and approving a first text triage model ...")
            call_command("train_triage_model", approve=True, stdout=self.stdout)
        self.ensure_accounts()
        keys_file = self.ensure_fleet(options["hosts"])
        self.ensure_track_record()
        if options["setup_only"]:
            return
        self.run_processes(options, keys_file)

    def ensure_accounts(self) -> None:
        """The demo's people, added as an operator adds anyone (manage.py add_person)."""
        for username, role, email in ACCOUNTS:
            if User.objects.filter(username=username).exists():
                self.stdout.write(
                    f"Account {username} exists (new password: "
                    f"python manage.py changepassword {username})."
                )
                continue
            added = add_person(
                username,
                role=role,
                email=email,
                actor=None,
                reason="the demo's people (manage.py run_demo)",
                now=timezone.now(),
            )
            self.stdout.write(
                self.style.SUCCESS(
                    f"Created {username} ({ROLES[role]}, {email}) with password: {added.password}"
                )
            )

    def ensure_fleet(self, count: int) -> Path:
        """Demo hosts and their keys, kept in a private file the fleet process reads."""
        keys_file = Path(settings.DATA_DIR) / "fleet-keys.json"
        known = {}
        if keys_file.exists():
            known = {item["name"]: item for item in json.loads(keys_file.read_text())["hosts"]}
        fleet = []
        scenarios = FLEET_SCENARIOS + ["healthy"] * max(count - len(FLEET_SCENARIOS), 0)
        for index in range(count):
            name = f"demo-{index + 1:02d}"
            scenario = scenarios[index % len(scenarios)] if index < len(scenarios) else "healthy"
            with transaction.atomic():
                host = Host.objects.filter(name=name).first()
                if host is None:
                    labels = {"env": "demo", "scenario": scenario}
                    _, key = add_host(name, now=timezone.now(), labels=labels)
                elif name in known:
                    key = known[name]["key"]
                else:
                    key = rotate_host_key(host, now=timezone.now())
            fleet.append({"name": name, "key": key, "scenario": scenario})
        keys_file.write_text(json.dumps({"hosts": fleet}, indent=2))
        keys_file.chmod(0o600)
        self.stdout.write(f"Demo fleet: {count} hosts (keys in {keys_file}).")
        return keys_file

    def ensure_track_record(self) -> None:
        """Past disk, memory and CPU problems people resolved and rated, once: the default
        policies heal by themselves only what has earned it (remediation/demo_history.py)."""
        hosts = list(Host.objects.filter(name__startswith="demo-").order_by("name"))
        supervisor = User.objects.get(username="supervisor")
        made = record_track_record(hosts, supervisor, timezone.now())
        if made:
            known = Pattern.objects.filter(category__in=PAST_PROBLEMS)
            self.stdout.write(
                f"Track record: {made} past tickets resolved and rated by people; "
                f"{sum(is_known_good(pattern) for pattern in known)} patterns now "
                "known good, so their next problems heal by themselves."
            )

    def run_processes(self, options: dict, keys_file: Path) -> None:
        port = options["port"]
        url = f"http://127.0.0.1:{port}"
        python = sys.executable
        # Notices become files to read (and the admin's outbox lists them), unless an
        # operator set a mail server.
        mail = Path(settings.DATA_DIR) / MAIL_FOLDER
        environment = dict(os.environ)
        # django-environ reads the path after "filemail://" without its first slash.
        environment.setdefault("EMAIL_URL", f"filemail:///{mail.resolve()}")
        commands = {
            "web": [
                python,
                "-m",
                "gunicorn",
                "config.asgi:application",
                "-c",
                "config/gunicorn.py",
                "-k",
                "uvicorn_worker.UvicornWorker",
                "-w",
                str(options["web_workers"]),
                "-b",
                f"127.0.0.1:{port}",
                "--graceful-timeout",
                "5",
                "--log-level",
                "warning",
            ],
            "qcluster": [python, "manage.py", "qcluster"],
        }
        processes: dict[str, subprocess.Popen] = {}

        def start(command: list[str]) -> subprocess.Popen:
            # A session of its own: the terminal's Ctrl-C reaches this command only, which
            # then stops each process in order instead of all of them at once.
            return subprocess.Popen(
                command, cwd=settings.BASE_DIR, env=environment, start_new_session=True
            )

        def stop(*_: object) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)  # also when started in the background
        try:
            for name, command in commands.items():
                processes[name] = start(command)
            self.wait_for(url)
            processes["fleet"] = start(
                [
                    python,
                    "-m",
                    "remediation.simulated_fleet",
                    "fleet",
                    "--url",
                    url,
                    "--keys",
                    str(keys_file),
                    "--interval",
                    str(options["interval"]),
                ]
            )
            self.stdout.write(
                self.style.SUCCESS(
                    f"\nWarden is running.\n"
                    f"  Admin:        {url}/admin/\n"
                    f"  Live console: {url}/console/\n"
                    f"  API docs:     {url}/api/docs\n"
                    f"  Outbox:       {url}/admin/governance/noticedelivery/ "
                    f"(the mail itself: {mail})\n"
                    f"Sign in as {', '.join(name for name, _, _ in ACCOUNTS)} with the "
                    "passwords printed when each was created.\n"
                    f"Press Ctrl-C to stop everything.\n"
                )
            )
            while True:
                for name, process in processes.items():
                    if process.poll() is not None:
                        raise CommandError(f"{name} exited with code {process.returncode}")
                time.sleep(0.5)
        except KeyboardInterrupt:
            self.stdout.write("\nStopping ...")
        finally:
            for process in processes.values():
                if process.poll() is None:
                    process.terminate()
            for process in processes.values():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=10)
                # Whatever the process left behind in its group (qcluster's workers) goes too.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)

    def wait_for(self, url: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise CommandError(f"the web server did not answer on {url} within {timeout:.0f}s")
