"""The allow-list as a ceiling: refuse, or run exactly the argv sent, and report it."""

import json
import os
import sys
import time
from pathlib import Path

import pytest

from tests.agent.helpers import RecordingExecutor, order
from warden_agent.argv import argv_digest
from warden_agent.executor import (
    KEY_ENV,
    OUTPUT_LIMIT,
    AllowListError,
    CommandExecutor,
    Order,
    Outcome,
    load_allowlist,
    report_body,
)

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable


def command_order(argv: list[str], **changes) -> Order:
    return Order.from_message(order("cmd", argv, **changes))


# --- the three refusals ----------------------------------------------------------------


def test_an_action_not_in_the_allow_list_is_refused_and_nothing_runs():
    executor = RecordingExecutor()

    outcome = executor.execute(Order.from_message(order("drop_database", ["dropdb", "app"])))

    assert outcome == Outcome(False, "action drop_database is not allow-listed on this agent")
    assert executor.ran == []


def test_an_argv_whose_digest_is_not_the_one_sent_is_refused():
    executor = RecordingExecutor()
    tampered = order("fix_it", argv_digest=argv_digest(["fix-it", "--later"]))

    outcome = executor.execute(Order.from_message(tampered))

    assert not outcome.ok and "argv_digest is not the digest of the argv sent" in outcome.output
    assert outcome.argv == [] and outcome.exit_code is None
    assert executor.ran == []


@pytest.mark.parametrize(
    ("name", "argv", "says"),
    [
        ("fix_it", ["fix-it", "--now", "--force"], "argv has 3 elements, the template 2"),
        ("fix_it", ["rm", "--now"], "argv[0] is 'rm', the template has 'fix-it'"),
        ("block_address", ["fw", "block", "--address", "0.0.0.0/0 -j ACCEPT"], "not a valid ip"),
    ],
)
def test_an_argv_outside_the_template_is_refused_even_with_its_true_digest(name, argv, says):
    executor = RecordingExecutor()

    outcome = executor.execute(Order.from_message(order(name, argv)))

    assert not outcome.ok and "does not match its allow-list template" in outcome.output
    assert says in outcome.output
    assert executor.ran == []


def test_an_order_without_an_argv_is_refused():
    executor = RecordingExecutor()
    outcome = executor.execute(Order.from_message(order("fix_it", argv=None) | {"argv": None}))
    assert not outcome.ok and "came without an argv" in outcome.output
    assert executor.ran == []


def test_a_filled_placeholder_runs_with_the_value_the_server_chose():
    executor = RecordingExecutor()
    argv = ["fw", "block", "--address", "192.0.2.7"]

    outcome = executor.execute(Order.from_message(order("block_address", argv)))

    assert outcome.ok and outcome.argv == argv
    assert [list(o.argv or ()) for o in executor.ran] == [argv]


def test_an_order_without_ids_cannot_be_reported_so_it_is_rejected():
    with pytest.raises(ValueError, match="execution_id and token"):
        Order.from_message({"action": "fix_it", "token": 1})


# --- the report ------------------------------------------------------------------------


def test_the_report_body_carries_the_argv_run_its_digest_and_exit_code():
    argv = ["fix-it", "--now"]
    body = report_body(3, Outcome(True, "done\n", argv, 0))
    assert body == {
        "token": 3,
        "ok": True,
        "output": "done\n",
        "argv": argv,
        "argv_digest": argv_digest(argv),
        "exit_code": 0,
    }


def test_the_report_of_a_refusal_says_nothing_ran():
    body = report_body(1, Outcome(False, "action x is not allow-listed on this agent"))
    assert body["argv"] == [] and body["argv_digest"] == "" and body["exit_code"] is None


def test_the_report_keeps_the_end_of_a_long_output():
    body = report_body(1, Outcome(False, "x" * 20_000 + "the error"))
    assert len(body["output"]) == OUTPUT_LIMIT
    assert body["output"].endswith("the error")


# --- running for real ------------------------------------------------------------------


def run_real(argv: list[str], timeout: float = 10, **changes) -> Outcome:
    executor = CommandExecutor({"cmd": argv}, timeout=timeout)
    return executor.execute(command_order(argv, **changes))


def test_runs_the_argv_and_reports_output_and_exit_code():
    argv = [PY, "-c", "print('hi')"]
    assert run_real(argv) == Outcome(True, "hi\n", argv, 0)

    failed = run_real([PY, "-c", "import sys; print('no'); sys.exit(3)"])
    assert not failed.ok and failed.exit_code == 3
    assert "no" in failed.output and "exit code 3" in failed.output


def test_a_chatty_action_reports_the_end_of_its_output():
    outcome = run_real([PY, "-c", "print('x' * 20000); print('the end')"])
    assert outcome.ok and len(outcome.output) <= OUTPUT_LIMIT
    assert outcome.output.endswith("the end\n")


def test_the_argv_goes_to_the_program_exactly_with_no_shell():
    argv = [PY, "-c", "import sys, json; print(json.dumps(sys.argv[1:]))", "$HOME", "a b", ";ls"]
    outcome = run_real(argv)
    assert json.loads(outcome.output) == ["$HOME", "a b", ";ls"]


def test_the_action_gets_its_ids_and_not_the_agents_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "secret")
    argv = [PY, "-c", "import os, json; print(json.dumps(dict(os.environ)))"]

    env = json.loads(run_real(argv, execution_id=41, kind="rollback").output)

    assert KEY_ENV not in env
    assert env["WARDEN_EXECUTION_ID"] == "41"
    assert env["WARDEN_TICKET_ID"] == "INC-000004"
    assert env["WARDEN_ACTION_KIND"] == "rollback"
    assert env["PATH"].split(os.pathsep)[0] == os.path.dirname(PY)


def test_a_bare_program_name_resolves_in_the_agents_own_bin_first(monkeypatch):
    # What lets the allow-list say "warden-runbook": the agent's venv bin comes first.
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    outcome = run_real(["warden-agent", "--version"])
    assert outcome.ok, outcome.output
    assert outcome.output.strip() == "warden-agent 1.1.0"


def test_a_program_that_does_not_exist_fails_and_nothing_ran():
    outcome = run_real(["/nonexistent/fix-it"])
    assert not outcome.ok and "cannot run /nonexistent/fix-it" in outcome.output
    assert outcome.argv == [] and outcome.exit_code is None


def test_a_timeout_kills_the_action_and_what_it_started(tmp_path):
    child = tmp_path / "child.pid"
    script = (
        "import subprocess, sys, time;"
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        f"open({str(child)!r}, 'w').write(str(p.pid)); print('started', flush=True);"
        "time.sleep(60)"
    )
    started = time.monotonic()

    outcome = run_real([PY, "-c", script], timeout=1.5)

    assert time.monotonic() - started < 10
    assert not outcome.ok and outcome.exit_code is None
    assert "started" in outcome.output and "timed out after 1.5s" in outcome.output
    pid = int(child.read_text())
    assert wait_for_exit(pid, 5), "the action's own child outlived the timeout"


def wait_for_exit(pid: int, timeout: float) -> bool:
    """True once `pid` is gone (or a zombie nobody reaped: dead all the same)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


# --- the allow-list file ---------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "allowlist.json"
    path.write_text(text)
    return path


def test_loads_a_valid_allow_list(tmp_path):
    entries = {"fix_it": ["fix-it", "--now"], "block": ["fw", "{address:ip}"]}
    assert load_allowlist(write(tmp_path, json.dumps(entries))) == entries


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{", "is not valid JSON: Expecting property name"),
        ('["fix-it"]', "must be a JSON object"),
        ('{"fix_it": "fix-it --now"}', "fix_it must map to a list of strings"),
        ('{"fix_it": ["fix-it", 7]}', "fix_it must map to a list of strings"),
        ('{"fix_it": []}', "fix_it must name a program first"),
        ('{"fix_it": ["{prog:word}", "x"]}', "the program cannot be a placeholder"),
        ('{"block": ["fw", "{address:ipv4}"]}', "block: placeholder {address:ipv4} has an unknown"),
        ('{"rm -rf": ["rm"]}', "'rm -rf' is not a valid action name"),
    ],
)
def test_a_faulty_allow_list_is_one_readable_line(tmp_path, text, says):
    with pytest.raises(AllowListError) as error:
        load_allowlist(write(tmp_path, text))
    message = str(error.value)
    assert says in message and "\n" not in message
    assert str(tmp_path / "allowlist.json") in message


def test_a_missing_allow_list_says_so(tmp_path):
    with pytest.raises(AllowListError, match=r"cannot read allow-list .*No such file"):
        load_allowlist(tmp_path / "absent.json")


CATALOGUE = """
clean_temp_and_rotate_logs | warden-runbook disk-quarantine --temp-dir /tmp --temp-dir /var/tmp --log-dir /var/log --older-than-days 7 --quarantine /var/lib/warden-agent/quarantine
restore_quarantined_files | warden-runbook disk-restore --quarantine /var/lib/warden-agent/quarantine
rotate_logs | warden-runbook rotate-logs --config /etc/logrotate.d/app
restart_leaking_service | warden-runbook restart-unit --unit app.service --check-active --timeout 30
restart_service | warden-runbook restart-unit --unit app.service --timeout 30
drop_page_cache | warden-runbook drop-caches
throttle_runaway_process | warden-runbook cpu-throttle --unit app.service --quota 50%
remove_cpu_throttle | warden-runbook cpu-unthrottle --unit app.service
restart_dns_resolver | warden-runbook dns-flush --resolver-unit systemd-resolved.service --check-name localhost
switch_dns_resolver | warden-runbook dns-switch --interface eth0 --server 10.0.0.53
restore_dns_resolver | warden-runbook dns-revert --interface eth0
apply_firewall_change | warden-runbook nft-apply --file /etc/warden/requested-change.nft
revert_firewall_change | warden-runbook nft-revert
block_address | warden-runbook nft-block --address {address:ip} --timeout 1h
unblock_address | warden-runbook nft-unblock --address {address:ip}
rate_limit_port | warden-runbook nft-rate-limit --port {port:port} --rate 100/second
remove_rate_limit | warden-runbook nft-remove-rate-limit --port {port:port}
restart_web_service | warden-runbook restart-unit --unit nginx.service --check-http http://127.0.0.1/ --timeout 30
"""  # noqa: E501 - the catalogue's table, one action a line


def test_the_example_allow_list_is_exactly_the_catalogue():
    rows = [line.split(" | ") for line in CATALOGUE.strip().splitlines()]
    expected = {name: template.split(" ") for name, template in rows}
    assert load_allowlist(REPO / "agent" / "examples" / "allowlist.json") == expected
