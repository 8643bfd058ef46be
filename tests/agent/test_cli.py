"""`warden-agent check` and `warden-agent run`, against the stand-in server."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.agent.fake_warden import KEY, FakeWarden
from tests.agent.helpers import wait_until
from warden_agent import config
from warden_agent.argv import allowlist_digest
from warden_agent.cli import build_agent, build_parser, main, overrides

REPO = Path(__file__).resolve().parents[2]
CATALOGUE = REPO / "agent" / "examples" / "allowlist.json"
WARDEN_AGENT = Path(sys.executable).parent / "warden-agent"  # the installed console script


@pytest.fixture(autouse=True)
def no_default_config(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "DEFAULT_CONFIG", str(tmp_path / "absent" / "agent.toml"))
    monkeypatch.delenv("WARDEN_AGENT_KEY", raising=False)


def setup(tmp_path: Path, url: str, key: str = KEY, **changes: str) -> str:
    """A config like an operator's: a key file (mode 600), the catalogue's allow-list."""
    key_file = tmp_path / "key"
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    settings = {
        "url": url,
        "host": "web-01",
        "key_file": str(key_file),
        "allowlist": str(CATALOGUE),
        "spool_dir": str(tmp_path / "spool"),
        **changes,
    }
    path = tmp_path / "agent.toml"
    path.write_text("".join(f"{name} = {json.dumps(value)}\n" for name, value in settings.items()))
    return str(path)


def check(capsys, path: str) -> tuple[int, str, list[str]]:
    code = main(["check", "--config", path])
    out, err = capsys.readouterr()
    return code, out, err.splitlines()


# --- check -----------------------------------------------------------------------------


def test_check_shows_what_would_run_and_that_all_is_well(fake, tmp_path, capsys):
    code, out, problems = check(capsys, setup(tmp_path, fake.url))

    assert code == 0, problems
    assert problems == []
    assert "allow-list " + str(CATALOGUE) + ": 18 action(s)" in out
    assert "  block_address: warden-runbook nft-block --address {address:ip} --timeout 1h" in out
    assert "  rate_limit_port: warden-runbook nft-rate-limit --port {port:port}" in out
    entries = json.loads(CATALOGUE.read_text())
    assert f"allow-list digest: {allowlist_digest(entries)}" in out
    assert f"server {fake.url}: reachable, key accepted" in out
    assert "holds no allow-list from this host yet" in out
    assert out.rstrip().endswith("all well")
    # no side effect: one read of the allow-list, nothing posted, no poll
    assert [(r["method"], r["path"]) for r in fake.requests] == [("GET", "/api/v1/agent/allowlist")]


def test_check_says_whether_the_server_holds_the_same_allow_list(fake, tmp_path, capsys):
    path = setup(tmp_path, fake.url)
    fake.held = {"entries": {}, "digest": allowlist_digest(json.loads(CATALOGUE.read_text()))}
    assert "holds the same allow-list digest" in check(capsys, path)[1]

    fake.held = {"entries": {}, "digest": "0" * 64}
    code, out, _ = check(capsys, path)
    assert code == 0
    assert f"holds another allow-list digest, {'0' * 64}: restart the agent" in out


def test_check_reports_an_unreachable_server_in_one_line(tmp_path, capsys):
    down = FakeWarden(listen=False)
    try:
        code, _, problems = check(capsys, setup(tmp_path, down.url))
    finally:
        down.close()
    assert code == 1
    assert len(problems) == 1
    assert problems[0].startswith(f"problem: cannot reach the server at {down.url}")


def test_check_reports_a_refused_key(fake, tmp_path, capsys):
    code, _, problems = check(capsys, setup(tmp_path, fake.url, key="wrong"))
    assert code == 1
    assert len(problems) == 1 and "refused the key" in problems[0] and "401" in problems[0]


def test_check_reports_a_key_of_another_host(fake, tmp_path, capsys):
    fake.host = "db-01"
    code, _, problems = check(capsys, setup(tmp_path, fake.url))
    assert code == 1
    assert problems == ["problem: the key belongs to host db-01, not to web-01"]


def test_check_reports_a_server_too_old_to_check_the_key(fake, tmp_path, capsys):
    fake.allowlist_status = 404
    code, _, problems = check(capsys, setup(tmp_path, fake.url))
    assert code == 1 and len(problems) == 1 and "cannot check the key" in problems[0]


def test_check_lists_every_file_problem_and_still_tries_what_it_can(fake, tmp_path, capsys):
    bad_allowlist = tmp_path / "allowlist.json"
    bad_allowlist.write_text('{"fix": "rm -rf /"}')
    path = setup(tmp_path, fake.url, allowlist=str(bad_allowlist))
    (tmp_path / "key").chmod(0o644)

    code, _, problems = check(capsys, path)

    assert code == 1
    assert len(problems) == 2
    assert "fix must map to a list of strings" in problems[0]
    assert "is readable by group or others" in problems[1]


def test_check_with_an_allow_list_but_no_server_settings(tmp_path, capsys):
    allowlist = tmp_path / "allowlist.json"
    allowlist.write_text('{"fix_it": ["fix-it"]}')
    path = tmp_path / "agent.toml"
    path.write_text(f'allowlist = "{allowlist}"\nspool_dir = "{tmp_path}"\n')

    code, out, problems = check(capsys, str(path))

    assert code == 1
    assert "  fix_it: fix-it" in out
    assert [p.split(":")[1].strip() for p in problems] == ["no url", "no host", "no API key"]


# --- run and bad input -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["run", "--url", "http://a", "--host", "h", "--interval", "abc"], "interval must be"),
        (["run", "--host", "h"], "no url"),
        (["run", "--url", "ftp://a", "--host", "h"], "must be http(s)"),
        (["run", "--frobnicate"], "unrecognized arguments: --frobnicate"),
        (["check", "--config", "/nonexistent/agent.toml"], "cannot read config"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, args, says):
    assert exit_code(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and says in err


def exit_code(args: list[str]) -> int:
    """main's exit code, whether it returns it or argparse exits with it."""
    try:
        return main(args)
    except SystemExit as exc:
        return int(exc.code or 0)


def test_run_refuses_a_bad_allow_list_before_starting(fake, tmp_path, capsys):
    bad = tmp_path / "allowlist.json"
    bad.write_text("{")
    code = main(["run", "--config", setup(tmp_path, fake.url, allowlist=str(bad))])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("warden-agent: error: allow-list") and "not valid JSON" in err
    assert fake.requests == []


def test_run_refuses_a_key_file_others_can_read(fake, tmp_path, capsys):
    path = setup(tmp_path, fake.url)
    (tmp_path / "key").chmod(0o640)
    assert main(["run", "--config", path]) == 2
    assert "readable by group or others (mode 0640)" in capsys.readouterr().err


def test_version():
    done = subprocess.run([WARDEN_AGENT, "--version"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stdout.strip() == "warden-agent 1.1.0"


def test_the_installed_agent_runs_from_its_config_and_stops_on_sigterm(fake, tmp_path):
    path = setup(tmp_path, fake.url, interval=0.1, poll_wait=0.5)
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    process = subprocess.Popen(
        [WARDEN_AGENT, "run", "--config", path],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: len(fake.samples()) >= 2 and fake.made("GET", "/api/v1/agent/"), 15)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert fake.made("PUT", "/api/v1/agent/allowlist")[0]["body"]["entries"] == json.loads(
        CATALOGUE.read_text()
    )
    assert "warden-agent 1.1.0: host web-01 reporting to" in stderr
    assert (tmp_path / "spool" / "readings").is_dir()


def test_the_agent_exits_1_by_itself_when_its_key_is_refused(fake, tmp_path):
    path = setup(tmp_path, fake.url, key="wrong", interval=0.1)
    done = subprocess.run(
        [WARDEN_AGENT, "run", "--config", path], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 1
    assert "refused" in done.stderr and "stopping this agent" in done.stderr


def test_request_timeout_bounds_each_request_and_a_flag_overrides_it(tmp_path):
    path = setup(tmp_path, "http://127.0.0.1:9", request_timeout=3)

    def agent(*flags: str) -> Any:
        args = build_parser().parse_args(["run", "--config", path, *flags])
        return build_agent(config.load_settings(path, overrides(args)))

    assert agent().client.timeout == 3.0
    assert agent("--request-timeout", "0.5").client.timeout == 0.5
