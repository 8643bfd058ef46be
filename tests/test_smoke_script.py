"""The helpers of .ci/smoke, CI's run of the README's first command and of the image's roles.

The smoke itself needs minutes, PyPI, PostgreSQL, Redis and nginx (.ci/run runs it); these
tests check the parts it judges by: which packages are dev-only, what a venv holds, which
files a fresh clone has, which processes a command left behind, what the console shows.
"""

import contextlib
import importlib.machinery
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.utils import timezone

ROOT = Path(__file__).resolve().parents[1]
SMOKE_PATH = ROOT / ".ci" / "smoke"


def load_smoke():
    loader = importlib.machinery.SourceFileLoader("ci_smoke", str(SMOKE_PATH))
    spec = importlib.util.spec_from_loader("ci_smoke", loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules["ci_smoke"] = module  # its dataclasses look their module up there
    loader.exec_module(module)
    return module


smoke = load_smoke()


# --- the venv -------------------------------------------------------------------------------


def test_dev_only_packages_are_what_requirements_dev_adds_to_the_runtime_ones():
    runtime = (ROOT / "requirements.txt").read_text()
    dev_only = smoke.dev_only_packages(runtime, (ROOT / "requirements-dev.txt").read_text())

    assert {"pytest", "pytest-django", "schemathesis", "ruff"} <= dev_only
    assert "django" not in dev_only and "-r" not in "".join(dev_only)
    assert dev_only.isdisjoint(smoke.requirement_names(runtime))


def test_requirement_names_are_compared_as_pip_compares_them():
    text = "\n".join(
        [
            "# a comment",
            "-r requirements.txt",
            "-e ./agent",
            "psycopg[binary,pool]==3.3.9",
            "Django_Rest.Knox==5.0.2  # trailing comment",
            'tomli>=2; python_version < "3.11"',
            "https://example.com/a.whl",
        ]
    )
    assert smoke.requirement_names(text) == {"psycopg", "django-rest-knox", "tomli"}


def test_the_running_venv_is_seen_to_hold_its_test_packages():
    # This test runs in the dev venv: the check that finds pytest here finds it in the demo's.
    installed = smoke.installed_distributions(Path(sys.prefix))

    assert {"pytest", "django", "djangorestframework"} <= installed


def test_a_dev_package_leaks_unless_a_runtime_package_needs_it():
    runtime = "Django==5.2\nsome-runtime==1\n-e ./agent\n"
    dev = "-r requirements.txt\npytest==9\nJinja2==3\nansible-core==2\n"
    installed = {
        "django": {"asgiref"},
        "asgiref": set(),
        "some-runtime": {"jinja2"},
        "jinja2": {"markupsafe"},
        "markupsafe": set(),
        "warden-agent": {"psutil"},
        "psutil": set(),
        "pytest": {"pluggy"},
        "pluggy": set(),
        "ansible-core": {"jinja2"},
    }

    leaked = smoke.leaked_dev_packages(runtime, dev, installed, local={"warden-agent"})

    assert leaked == ["ansible-core", "pytest"]  # jinja2 is some-runtime's
    assert smoke.leaked_dev_packages(runtime, dev, {"django": set(), "jinja2": set()}) == ["jinja2"]


def test_what_a_package_needs_is_read_from_the_venvs_metadata():
    requirements = smoke.distribution_requirements(Path(sys.prefix))

    needed = smoke.closure(requirements, ["pytest"])

    assert {"pytest", "pluggy", "iniconfig"} <= needed
    assert "django" not in needed
    # the agent package, installed from ./agent by requirements.txt
    assert "warden-agent" in smoke.local_distributions(Path(sys.prefix))


def test_a_venv_without_packages_holds_none(tmp_path):
    assert smoke.installed_distributions(tmp_path) == set()


# --- what the demo prints and serves -----------------------------------------------------------


def test_the_password_is_read_from_a_terminals_coloured_output():
    output = (
        "Migrating the database ...\n"
        "\x1b[32;1mCreated supervisor (supervisors, supervisor@example.com)"
        " with password: aB3-x_Yz9\x1b[0m\n"
        "\x1b[32;1mCreated approver (approvers, approver@example.com) with password: other\x1b[0m\n"
    )
    assert smoke.printed_password(output, "supervisor") == "aB3-x_Yz9"
    assert (
        smoke.printed_password("Account supervisor exists (new password: ...)", "supervisor")
        is None
    )


@pytest.mark.django_db
def test_hosts_with_readings_are_those_the_console_shows_a_last_sample_for(agent, alice, client):
    from remediation.actions import add_host

    agent.post_metrics(agent.sample())  # web-01 reports
    add_host("db-01", now=timezone.now())  # and this one never does
    client.force_login(alice)

    response = client.get("/console/panels")

    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-host="db-01"' in html  # listed, but without a reading
    assert smoke.hosts_with_readings(html) == ["web-01"]


# --- the image ----------------------------------------------------------------------------------


def test_a_local_requirement_the_image_copies_only_after_pip_install_is_a_gap():
    copied_after = "FROM python:3.11-slim\nWORKDIR /app\nCOPY requirements.txt .\n"
    copied_after += "RUN pip install --no-cache-dir -r requirements.txt\nCOPY . .\n"
    copied_first = copied_after.replace(
        "COPY requirements.txt .", "COPY requirements.txt .\nCOPY agent/ agent/"
    )
    requirements = "Django==5.2.19\n-e ./agent\n"

    assert smoke.image_install_gaps(copied_after, requirements) == ["./agent"]
    assert smoke.image_install_gaps(copied_first, requirements) == []
    assert (
        smoke.image_install_gaps("COPY . .\nRUN pip install -r requirements.txt", requirements)
        == []
    )
    assert smoke.image_install_gaps(copied_after, "Django==5.2.19\n") == []


def test_the_smoke_database_and_redis_urls_keep_everything_but_the_name():
    url = "postgres://postgres:secret@127.0.0.1:55432/warden?sslmode=disable"

    assert smoke.with_database(url, "warden_smoke") == (
        "postgres://postgres:secret@127.0.0.1:55432/warden_smoke?sslmode=disable"
    )
    assert smoke.with_redis_db("redis://127.0.0.1:56379/0", 15) == "redis://127.0.0.1:56379/15"
    assert smoke.with_redis_db("redis://127.0.0.1:56379", 15) == "redis://127.0.0.1:56379/15"


def test_a_clean_environment_is_a_fresh_shells():
    environ = {
        "PATH": "/work/.venv/bin:/usr/bin",
        "VIRTUAL_ENV": "/work/.venv",
        "HOME": "/root",
        "LC_ALL": "C.UTF-8",
        "PIP_FIND_LINKS": "/opt/wheels",
        "DATABASE_URL": "postgres://x",
        "REDIS_URL": "redis://x",
        "WARDEN_ENV": "production",
        "PYTHONPATH": "/work",
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    assert smoke.clean_environment(environ) == {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "LC_ALL": "C.UTF-8",
        "PIP_FIND_LINKS": "/opt/wheels",
    }


# --- the fresh copy -----------------------------------------------------------------------------


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def test_the_copy_has_tracked_and_new_files_but_nothing_ignored_or_deleted(tmp_path):
    repo, copy = tmp_path / "repo", tmp_path / "copy"
    (repo / "data").mkdir(parents=True)
    git(repo, "init", "-q")
    (repo / ".gitignore").write_text("data/\n.venv/\n")
    (repo / "tracked.txt").write_text("tracked")
    (repo / "gone.txt").write_text("deleted but not committed")
    (repo / "run.sh").write_text("#!/bin/sh\n")
    (repo / "run.sh").chmod(0o755)
    git(repo, "add", ".")
    (repo / "gone.txt").unlink()
    (repo / "new.py").write_text("not committed yet")
    (repo / "data" / "warden.sqlite3").write_text("ignored")

    count = smoke.copy_work_tree(repo, copy)

    assert sorted(p.name for p in copy.iterdir()) == [
        ".gitignore",
        "new.py",
        "run.sh",
        "tracked.txt",
    ]
    assert count == 4
    assert os.access(copy / "run.sh", os.X_OK)  # the entrypoint stays executable


# --- processes ----------------------------------------------------------------------------------


SPAWN_ORPHAN = """
import subprocess, sys
orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                          start_new_session=True, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
print(orphan.pid, flush=True)
"""


def test_a_process_that_left_its_parents_session_is_still_found_by_its_marker():
    watch = smoke.ProcessWatch(marker="test-" + os.urandom(4).hex())
    env = {**os.environ, smoke.MARKER_NAME: watch.marker}
    # A parent that starts a child in a session of its own and exits: the child is orphaned.
    parent = subprocess.run(
        [sys.executable, "-c", SPAWN_ORPHAN], env=env, capture_output=True, text=True, check=True
    )
    orphan = int(parent.stdout)
    unrelated = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert [pid for pid, _ in watch.alive()] == [orphan]

        os.kill(orphan, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while watch.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert watch.alive() == []
    finally:
        for pid in (orphan, unrelated.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        unrelated.wait()


def test_the_descendants_of_a_root_are_watched_while_it_runs():
    watch = smoke.ProcessWatch(marker="unused")
    shell = subprocess.Popen(["sh", "-c", "sleep 60 & wait"])
    try:
        watch.add_root(shell.pid)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # until the child has exec'd sleep
            labels = sorted(smoke.process_label(name) for _, name in watch.alive())
            if labels == ["sh", "sleep"]:
                break
            time.sleep(0.1)
        assert labels == ["sh", "sleep"]
    finally:
        for pid, _ in watch.alive():
            os.kill(pid, signal.SIGKILL)
        shell.wait()


def test_processes_are_named_by_what_they_run():
    commands = [
        "make demo",
        "/tmp/r/.venv/bin/python manage.py run_demo",
        "/tmp/r/.venv/bin/python /tmp/r/.venv/bin/gunicorn config.asgi:application -w 2",
        "/tmp/r/.venv/bin/python /tmp/r/.venv/bin/gunicorn config.asgi:application -w 2",
        "/tmp/r/.venv/bin/python3.11 -m remediation.simulated_fleet fleet --url http://127.0.0.1:80",
        "/bin/sh /tmp/r/deploy/entrypoint.sh web",
        "nginx: worker process",
    ]
    assert smoke.process_summary(commands) == (
        "make, manage.py run_demo, gunicorn x2, remediation.simulated_fleet, entrypoint.sh, nginx"
    )


# --- the command line -----------------------------------------------------------------------------


def test_the_image_step_without_servers_says_so_in_one_line():
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}

    result = subprocess.run(
        [sys.executable, str(SMOKE_PATH), "--only", "image"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "smoke: the image step needs DATABASE_URL=postgres://... and REDIS_URL=redis://... "
        "(.ci/run exports them)"
    ]


def test_a_bad_argument_is_one_line_without_the_usage_block():
    result = subprocess.run(
        [sys.executable, str(SMOKE_PATH), "--only", "everything"],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        ".ci/smoke: error: argument --only: invalid choice: 'everything' "
        "(choose from 'demo', 'image') (see --help)"
    ]
