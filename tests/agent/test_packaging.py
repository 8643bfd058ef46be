"""What operators install: the package's metadata, the systemd unit, the README."""

import configparser
import json
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

import warden_agent

AGENT = Path(__file__).resolve().parents[2] / "agent"
UNIT = AGENT / "systemd" / "warden-agent.service"


def test_the_package_metadata_is_what_operators_install():
    project = tomllib.loads((AGENT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "warden-agent"
    assert project["version"] == warden_agent.__version__ == metadata.version("warden-agent")
    assert project["requires-python"] == ">=3.11"
    assert project["dependencies"] == ["psutil>=7.0"]
    assert project["scripts"] == {
        "warden-agent": "warden_agent.cli:main",
        "warden-runbook": "warden_agent.runbooks.cli:main",
    }


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser


def test_the_unit_runs_the_installed_agent_as_root_and_always_restarts():
    service = unit()["Service"]
    assert service["ExecStart"] == (
        "/opt/warden-agent/bin/warden-agent run --config /etc/warden-agent/agent.toml"
    )
    assert service["User"] == "root"
    assert service["Restart"] == "always"
    assert service["StateDirectory"] == "warden-agent"
    assert service["ConfigurationDirectory"] == "warden-agent"
    # a running action finishes and is reported before the agent exits
    assert service["KillMode"] == "mixed"


@pytest.mark.parametrize(
    ("setting", "runbook"),
    [
        ("PrivateTmp", "disk-quarantine cleans the real /tmp and /var/tmp"),
        ("ProtectKernelTunables", "drop-caches writes /proc/sys/vm/drop_caches"),
        ("ProtectControlGroups", "cpu-throttle sets a unit's CPU quota"),
        ("PrivateNetwork", "the agent talks to Warden; nft changes the host's firewall"),
        ("CapabilityBoundingSet", "nft needs CAP_NET_ADMIN"),
        ("ProtectHome", "quarantine and restore move files"),
    ],
)
def test_the_unit_has_no_hardening_that_breaks_a_runbook(setting, runbook):
    assert setting not in unit()["Service"], runbook
    protect = unit()["Service"]["ProtectSystem"]
    assert protect in ("true", "yes"), "full/strict make /etc read-only: dns-switch writes it"


def test_systemd_accepts_the_unit(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        # Not installed by CI (no test here needs systemd running); Debian's systemd has it.
        pytest.skip("systemd-analyze is not installed")
    # verify wants ExecStart to exist: point it at this environment's console script.
    script = Path(sys.executable).parent / "warden-agent"
    copy = tmp_path / "warden-agent.service"
    copy.write_text(UNIT.read_text().replace("/opt/warden-agent/bin/warden-agent", str(script)))
    done = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "warden-agent.service" not in done.stderr, done.stderr


def test_the_readme_names_every_action_of_the_example_allow_list_and_links_the_runbooks():
    readme = (AGENT / "README.md").read_text()
    for action, template in json.loads((AGENT / "examples" / "allowlist.json").read_text()).items():
        assert f"| `{action}` | `{' '.join(template)}` |" in readme
    assert "](RUNBOOKS.md)" in readme
