"""`manage.py screenshots`: regenerate the README's screenshots in docs/screenshots/.

It never touches your data: it re-runs itself on a fresh embedded database in a temporary
folder, trains and approves a model, stages an hour of a small fleet through the real API
(a disk fix that healed and was verified, a memory leak healing, a firewall change and a
DNS slowdown waiting for people), serves the real ASGI application and photographs it with
Debian's Chromium.
"""

import importlib.util
import io
import logging
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.utils import timezone

from config.commands import WardenCommand
from remediation.actions import add_host
from remediation.models import Ticket

SCENE_ENV = "WARDEN_SCREENSHOT_SCENE"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
VIEWPORT = {"width": 1400, "height": 1000}
FLEET = ("web-01", "web-02", "web-03", "web-04", "db-01", "db-02", "cache-01", "dns-01")
HEALTHY = {
    "disk_usage": 48.0,
    "memory_usage": 52.0,
    "cpu_usage": 28.0,
    "dns_latency_ms": 19.0,
    "firewall_change_requested": 0,
}


class Command(WardenCommand):
    help = "Regenerate the README's screenshots (console, ticket story, dashboard) in docs/."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--out",
            default=str(settings.BASE_DIR / "docs" / "screenshots"),
            help="folder for the PNG files (default: docs/screenshots)",
        )
        parser.add_argument(
            "--only",
            nargs="*",
            default=[],
            help="photograph only these pages (their file names' first part, e.g. tickets)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        out = Path(options["out"]).resolve()
        if not os.path.exists(CHROMIUM):
            raise CommandError("screenshots need Debian's chromium (apt-get install chromium)")
        # Playwright is a development requirement, not a runtime one.
        if importlib.util.find_spec("playwright") is None:
            raise CommandError("screenshots need playwright (pip install -r requirements-dev.txt)")
        if os.environ.get(SCENE_ENV) != "1":
            self.run_in_scratch_database(out, options["only"])
            return
        out.mkdir(parents=True, exist_ok=True)
        self.stdout.write("Setting up a scratch Warden ...")
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        call_command("train_severity_model", approve=True, stdout=io.StringIO())
        user = User.objects.create_user("supervisor", email="ops@example.com", is_staff=True)
        user.groups.add(Group.objects.get(name="supervisors"))
        story = stage_fleet(timezone.now(), user)
        pause_one_host(user, timezone.now())
        self.stdout.write("Photographing ...")
        for name in photograph(user, story, out, set(options["only"])):
            self.stdout.write(f"  {out / name}")

    def run_in_scratch_database(self, out: Path, only: list[str]) -> None:
        with tempfile.TemporaryDirectory(prefix="warden-screenshots-") as scratch:
            keep = {
                key: value
                for key, value in os.environ.items()
                if not key.startswith(("WARDEN_", "DATABASE_URL", "REDIS_URL"))
            }
            env = {
                **keep,
                "WARDEN_DATA_DIR": scratch,
                "WARDEN_ENV": "embedded",
                SCENE_ENV: "1",
                # Playwright's sync API runs an event loop in the command's thread.
                "DJANGO_ALLOW_ASYNC_UNSAFE": "true",
            }
            command = [sys.executable, "manage.py", "screenshots", "--out", str(out)]
            command += ["--only", *only] if only else []
            result = subprocess.run(command, cwd=settings.BASE_DIR, env=env, check=False)
        if result.returncode:
            raise CommandError(f"taking the screenshots failed (exit {result.returncode})")


def reading(minute: int, phase: float, **overrides: float) -> dict[str, float]:
    """A healthy host's gentle daily wobble, `minute` minutes into the hour."""
    wobble = math.sin(minute / 9 + phase)
    return {
        **HEALTHY,
        "cpu_usage": round(28 + 12 * wobble, 1),
        "memory_usage": round(52 + 6 * math.cos(minute / 13 + phase), 1),
        **overrides,
    }


def stage_fleet(now: datetime, supervisor: User) -> str:
    """An hour of the fleet through the real API; returns the healed ticket's id. A fleet
    without a track record earns no autonomy yet: the disk fix waits for a person, and
    `supervisor` approves it."""
    from django_q.conf import Conf

    Conf.SYNC = True  # queued work runs at once: no qcluster in a scratch run
    logging.getLogger("django-q").setLevel(logging.WARNING)
    client = Client(HTTP_HOST="localhost")
    keys = {name: add_host(name, now=now, labels={"env": "prod"})[1] for name in FLEET}

    def post(name: str, samples: list[dict[str, Any]]) -> dict[str, Any]:
        response = client.post(
            "/api/v1/metrics",
            samples,
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {keys[name]}",
        )
        if response.status_code >= 300:
            raise CommandError(f"staging {name} failed: {response.content.decode()[:200]}")
        return response.json()

    start = now - timedelta(minutes=60)
    for index, name in enumerate(FLEET):
        history = []
        for minute in range(0, 58):
            extra = {"disk_usage": round(60 + minute * 0.55, 1)} if name == "db-01" else {}
            history.append(
                {
                    "host": name,
                    "taken_at": (start + timedelta(minutes=minute)).isoformat(),
                    **reading(minute, index, **extra),
                }
            )
        post(name, history)

    def at(minutes: float) -> str:
        return (start + timedelta(minutes=minutes)).isoformat()

    # db-01's disk fills up: Warden heals it, the agent runs the runbook, fresh readings verify.
    [opened] = post(
        "db-01", [{"host": "db-01", "taken_at": at(58), **reading(58, 4, disk_usage=96.5)}]
    )["results"]
    approve_waiting(opened["ticket_id"], supervisor)
    actions = client.get(
        "/api/v1/agent/actions?wait=0", HTTP_AUTHORIZATION=f"Bearer {keys['db-01']}"
    ).json()["actions"]
    for action in actions:
        client.post(
            f"/api/v1/agent/actions/{action['execution_id']}/result",
            {
                "token": action["token"],
                "ok": True,
                "output": "removed 14.2 GiB of rotated logs",
                "argv": action["argv"],
                "argv_digest": action["argv_digest"],
                "exit_code": 0,
            },
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {keys['db-01']}",
        )
    # Verification counts readings taken after the fix finished: these are taken now.
    fresh = timezone.now()
    post("db-01", [{"host": "db-01", "taken_at": fresh.isoformat(), **reading(60, 4)}])

    # A firewall change and a DNS slowdown wait for people; a memory leak heals itself.
    post(
        "web-02",
        [{"host": "web-02", "taken_at": at(59.5), **reading(59.5, 1, firewall_change_requested=1)}],
    )
    post(
        "cache-01",
        [{"host": "cache-01", "taken_at": at(59.5), **reading(59.5, 6, memory_usage=97.5)}],
    )
    post(
        "dns-01",
        [{"host": "dns-01", "taken_at": at(59.5), **reading(59.5, 7, dns_latency_ms=640.0)}],
    )
    return opened["ticket_id"]


# Every page a supervisor, approver or compliance officer opens, by the name its files
# carry: docs/screenshots/<name>-<width>-<light|dark>.png. The tall pages are taken whole
# (full_page) at 1280 px only; elsewhere the first screen says how the page reads.
WIDTHS = (1280, 1920)
SCHEMES = ("light", "dark")
HEIGHT = 900
TALL = {"ticket-story", "evidence", "model-version", "approval-confirm", "dashboard"}


def pages(ticket_id: str) -> dict[str, str]:
    """Page name -> path, on the staged scene's objects (the first of each kind)."""
    from governance.models import ApprovalRequest, AuditEvent, Pause, Policy
    from governance.notices.links import sign_link
    from remediation.models import Execution
    from scoring.models import ModelVersion

    ticket = Ticket.objects.get(ticket_id=ticket_id)
    waiting = ApprovalRequest.objects.filter(status="pending").order_by("created_at").first()
    approver = User.objects.get(username="supervisor")
    admin_change = "/admin/{}/{}/{}/change/"
    shown = {
        "console": "/console/",
        "ticket-story": admin_change.format("remediation", "ticket", ticket.pk),
        "evidence": f"/tickets/{ticket.ticket_id}/evidence",
        "dashboard": "/admin/",
        "app-index": "/admin/governance/",
        "tickets": "/admin/remediation/ticket/",
        "approvals": "/admin/governance/approvalrequest/",
        "approval": admin_change.format("governance", "approvalrequest", waiting.pk),
        "approval-confirm": "/admin/governance/approvalrequest/#approve",
        "audit": "/admin/governance/auditevent/",
        "audit-event": admin_change.format(
            "governance", "auditevent", AuditEvent.objects.order_by("-pk").first().pk
        ),
        "executions": "/admin/remediation/execution/",
        "policies": "/admin/governance/policy/",
        "policy": admin_change.format("governance", "policy", Policy.objects.first().pk),
        "pauses": "/admin/governance/pause/",
        "pause": admin_change.format("governance", "pause", Pause.objects.first().pk),
        "model-versions": "/admin/scoring/modelversion/",
        "model-version": admin_change.format(
            "scoring", "modelversion", ModelVersion.objects.order_by("-pk").first().pk
        ),
        "notice-verdict": f"/notices/{sign_link(waiting.pk, 'approve', approver.pk)}",
        "notice-refused": "/notices/not-a-link-warden-signed",
        "api-docs": "/api/docs",
    }
    execution = Execution.objects.order_by("pk").first()
    if execution is not None:  # the disk fix ran (a scene without one skips its page)
        shown["execution"] = admin_change.format("remediation", "execution", execution.pk)
    return shown


def open_approve_confirmation(page: Any) -> None:
    """The admin's Approve... page: tick the oldest waiting request, choose Approve, Go."""
    page.locator("input[name=_selected_action]").first.check()
    page.select_option("select[name=action]", "approve_action")
    page.locator("button[name=index]").click()
    page.wait_for_load_state()


def approve_waiting(ticket_id: str, supervisor: User) -> None:
    """The supervisor approves the ticket's waiting request, if it waits for one."""
    from governance.approvals.actions import approve_request
    from governance.models import ApprovalRequest

    waiting = ApprovalRequest.objects.filter(ticket__ticket_id=ticket_id, status="pending")
    for request in waiting:
        approve_request(
            request, actor=supervisor, reason="disk nearly full: clean up", now=timezone.now()
        )


def pause_one_host(user: User, now: datetime) -> None:
    """web-04 is being patched: a supervisor paused automation on it for two hours."""
    from governance.models import Pause, PauseScope
    from governance.pauses.actions import pause_automation
    from remediation.models import Host

    pause = Pause(
        scope=PauseScope.HOST,
        host=Host.objects.get(name="web-04"),
        ends_at=now + timedelta(hours=2),
    )
    pause_automation(pause, actor=user, reason="Kernel patching until 16:00", now=now)


def photograph(user: User, ticket_id: str, out: Path, only: set[str]) -> list[str]:
    import uvicorn
    from playwright.sync_api import sync_playwright

    from config.asgi import application

    # whitenoise hands the ASGI handler synchronous file iterators: harmless here.
    warnings.filterwarnings("ignore", message="StreamingHttpResponse must consume")
    client = Client()
    client.force_login(user)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(application, host="127.0.0.1", port=port, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    taken = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
            )
            for name, path in pages(ticket_id).items():
                if only and name not in only:
                    continue
                for width in WIDTHS:
                    whole = name in TALL and width == WIDTHS[0]
                    for scheme in SCHEMES:
                        viewport = {"width": width, "height": HEIGHT}
                        context = browser.new_context(viewport=viewport, color_scheme=scheme)
                        context.add_cookies(
                            [
                                {
                                    "name": "sessionid",
                                    "value": client.cookies["sessionid"].value,
                                    "url": base,
                                }
                            ]
                        )
                        page = context.new_page()
                        page.goto(base + path)
                        if path == "/console/":
                            page.get_by_test_id("status").filter(has_text="live").wait_for(
                                timeout=10_000
                            )
                            page.wait_for_timeout(500)  # the panels' refresh after the catch-up
                        if name == "approval-confirm":
                            open_approve_confirmation(page)
                        if name == "api-docs":
                            page.wait_for_selector(".swagger-ui .opblock", timeout=10_000)
                        file = f"{name}-{width}-{scheme}.png"
                        page.screenshot(path=str(out / file), full_page=whole)
                        taken.append(file)
                        context.close()
            browser.close()
    finally:
        server.should_exit = True
    return taken
