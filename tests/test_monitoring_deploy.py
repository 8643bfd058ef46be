"""The alert rules and the Grafana dashboard in deploy/ read only what /metrics exposes.

Parsed always; checked and unit-tested with `promtool` (Debian's prometheus package)
when it is installed. .ci/run leaves that package out (96 MB installed), so there the
promtool tests skip; they fail under CI only if .ci/run installs it and it is missing.
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from feedback.actions import give_feedback
from feedback.models import Feedback
from tests.test_monitoring_metrics import heal
from tests.test_prometheus import scrape

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "warden-rules.yml"
RULE_TESTS = PROMETHEUS / "warden-rules.test.yml"
PROMETHEUS_CONFIG = PROMETHEUS / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "warden-dashboard.json"

ALERTS = {
    "LowReliabilityScore",
    "HighAutoRemediationFailureRate",
    "ModelDriftOutOfDepth",
    "ApprovalsWaitingTooLong",
}
SEVERITIES = {"info", "warning", "critical"}
METRIC = re.compile(r"\bwarden_[a-zA-Z0-9_]+")
DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
# Grafana's own variables in a query, and what stands in for them when promtool reads it.
GRAFANA_VARIABLES = {"$__range": "1d", "$__rate_interval": "1m", "$__interval": "1m"}


def load_rules() -> dict:
    return yaml.safe_load(RULES.read_text())


def alert_rules() -> list[dict]:
    return [rule for group in load_rules()["groups"] for rule in group["rules"] if "alert" in rule]


def load_dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query of every panel."""
    return [
        (panel["title"], target["expr"])
        for panel in load_dashboard()["panels"]
        for target in panel.get("targets", [])
    ]


def balanced(expr: str) -> bool:
    closing = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    for char in re.sub(r'"[^"]*"', '""', expr):
        if char in "([{":
            stack.append(char)
        elif char in closing and (not stack or stack.pop() != closing[char]):
            return False
    return not stack


@pytest.fixture
def exposed(
    trusting_policies, agent, other_agent, alice, client, settings, monkeypatch
) -> set[str]:
    """The metric names a scrape shows once there is something of everything: fixes that
    worked and failed, feedback, a pending approval, and enough samples to judge drift."""
    monkeypatch.setattr("scoring.monitoring.DRIFT_MIN_SAMPLES", 200)
    heal(agent, "disk")
    execution = heal(agent, "memory", ok=False)
    give_feedback(
        Feedback(ticket=execution.ticket, feedback_type="negative"),
        actor=alice,
        reason="",
        now=timezone.now(),
    )
    other_agent.post_metrics(other_agent.sample("firewall"))
    agent.post_metrics([agent.sample() for _ in range(250)])
    settings.WARDEN_METRICS_TOKEN = "scrape-token-for-deploy-tests-0123456"
    response = scrape(client, HTTP_AUTHORIZATION=f"Bearer {settings.WARDEN_METRICS_TOKEN}")
    assert response.status_code == 200
    families = list(text_string_to_metric_families(response.content.decode()))
    names = {sample.name for family in families for sample in family.samples}
    assert {"warden_model_drift_level", "warden_feedback_total"} <= names, names
    return names


def test_the_rules_file_has_the_alerts_each_complete():
    rules = alert_rules()
    assert {rule["alert"] for rule in rules} == ALERTS
    assert len(rules) == len(ALERTS)
    for rule in rules:
        name = rule["alert"]
        assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
        assert isinstance(rule["expr"], str) and METRIC.search(rule["expr"]), name
        assert balanced(rule["expr"]), name
        assert DURATION.match(rule["for"]), name
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert rule["annotations"]["summary"].strip(), name
        assert rule["annotations"]["description"].strip(), name


def test_the_seed_alerts_keep_their_thresholds():
    rules = {rule["alert"]: rule for rule in alert_rules()}
    low = rules["LowReliabilityScore"]
    assert "warden_reliability_score" in low["expr"] and "< 70" in low["expr"]
    assert low["for"] == "1h"
    failing = rules["HighAutoRemediationFailureRate"]
    assert "warden_auto_remediation_failures_total[1h]" in failing["expr"]
    assert "> 0.2" in failing["expr"]
    assert failing["for"] == "15m"


def test_the_rule_unit_tests_cover_the_seed_alerts_with_the_rules_labels():
    unit = yaml.safe_load(RULE_TESTS.read_text())
    assert unit["rule_files"] == [RULES.name]
    severity = {rule["alert"]: rule["labels"]["severity"] for rule in alert_rules()}
    fired = {}
    for case in unit["tests"]:
        for check in case["alert_rule_test"]:
            for alert in check["exp_alerts"]:
                fired[check["alertname"]] = alert["exp_labels"]["severity"]
    assert {"LowReliabilityScore", "HighAutoRemediationFailureRate"} <= set(fired)
    assert all(severity[name] == level for name, level in fired.items())


def test_every_metric_the_rules_and_the_dashboard_read_is_one_metrics_exposes(exposed):
    used = {
        (where, name)
        for where, expr in [
            *((rule["alert"], rule["expr"]) for rule in alert_rules()),
            *dashboard_queries(),
        ]
        for name in METRIC.findall(expr)
    }
    unknown = sorted((where, name) for where, name in used if name not in exposed)
    assert unknown == []
    assert {name for _, name in used} >= {
        "warden_reliability_score",
        "warden_auto_remediation_attempts_total",
        "warden_auto_remediation_successes_total",
        "warden_auto_remediation_failures_total",
        "warden_feedback_total",
        "warden_approvals_pending_by_age",
        "warden_approvals_oldest_pending_seconds",
        "warden_model_drift_level",
    }


def test_the_dashboard_is_a_grafana_model_on_a_prometheus_datasource_variable():
    dashboard = load_dashboard()
    assert dashboard["uid"] and dashboard["title"]
    assert dashboard["schemaVersion"] >= 36
    [variable] = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert variable["query"] == "prometheus"
    source = {"type": "prometheus", "uid": f"${{{variable['name']}}}"}
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["type"] in {"stat", "timeseries", "bargauge", "gauge", "table", "piechart"}
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["datasource"] == source, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == source, panel["title"]
            assert METRIC.search(target["expr"]), panel["title"]
            assert balanced(target["expr"]), panel["title"]


def test_the_prometheus_config_scrapes_with_the_token_and_loads_the_rules():
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert config["rule_files"] == [RULES.name]
    [job] = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["authorization"]["type"] == "Bearer"
    assert job["authorization"]["credentials_file"]


def ci_installs_promtool() -> bool:
    script = (ROOT / ".ci" / "run").read_text()
    return any(
        "apt-get install" in line and re.search(r"\bprometheus\b", line)
        for line in script.splitlines()
    )


@pytest.fixture
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI") and ci_installs_promtool():
            pytest.fail(".ci/run installs prometheus, yet promtool is not on PATH")
        pytest.skip(
            "promtool is not installed (Debian package prometheus, 96 MB, left out of "
            ".ci/run): the rules and dashboard were checked by parsing only"
        )
    return path


def run(*command: str, cwd: Path) -> str:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_promtool_checks_the_rules(promtool):
    assert "SUCCESS: 4 rules found" in run(promtool, "check", "rules", RULES.name, cwd=PROMETHEUS)


def test_promtool_runs_the_rules_unit_tests(promtool):
    assert "SUCCESS" in run(promtool, "test", "rules", RULE_TESTS.name, cwd=PROMETHEUS)


def test_promtool_parses_every_dashboard_query(promtool, tmp_path):
    # each query as a recording rule: `check rules` parses its PromQL
    rules = []
    for number, (title, expr) in enumerate(dashboard_queries()):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        rules.append(
            {"record": f"dashboard:query_{number}", "expr": expr, "labels": {"panel": title}}
        )
    (tmp_path / "dashboard.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]})
    )
    run(promtool, "check", "rules", "dashboard.yml", cwd=tmp_path)


def test_promtool_checks_the_prometheus_config(promtool, tmp_path):
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    token = tmp_path / "token"
    token.write_text("scrape-token\n")
    config["scrape_configs"][0]["authorization"]["credentials_file"] = str(token)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    shutil.copy(RULES, tmp_path / RULES.name)
    run(promtool, "check", "config", "prometheus.yml", cwd=tmp_path)
