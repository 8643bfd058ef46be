"""The hand-off jobs in deploy/ (an AWX job template and its playbooks, Rundeck jobs, a
StackStorm pack), each doing its real work and reporting to Warden's own callback receiver.

Warden really claims and hands off an execution (the disk scenario opens the ticket; the
runbook's action names are the job's), a local HTTP receiver takes its request in the
system's format, and the system's job then runs from that very request:

- the work is deploy/*/warden-job.sh on a scratch root: release symlinks really switched,
  units really started. This machine runs no systemd, so a stand-in `systemctl` first on
  PATH runs each unit as a python http.server process serving the directory units.json
  names for it, resolved when the unit starts (a restart serves the release `current`
  points to then);
- AWX: ansible-playbook (ansible-core) runs the playbook over a local connection with the
  job template's extra vars and the launch's (under CI=1 a missing ansible-core fails);
- Rundeck: a stand-in follows the job definition as Rundeck does: options and their rules,
  the node filter, script arguments, the key-value log filter, the error handler, and the
  "Local Command" steps with RD_OPTION_* as their only environment; it leaves out the
  `sudo -n` interpreter (root here, no sudo);
- StackStorm: a stand-in matches the rule and renders its parameters with Jinja, follows
  the orquesta workflow's tasks, transitions and publishes, passes the remote script its
  arguments as the remote runner does (to this machine), and runs the Python action under a
  stand-in of st2's Action class with an encrypted datastore.

The reports go over HTTP to Warden's callback (live_server), which takes or refuses them.
"""

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from django.utils import timezone

from remediation import handoff
from remediation.actions import save_automation_target, save_runbook
from remediation.models import AutomationTarget, Execution, Runbook
from tests.remediation.test_handoff import Receiver

# Execution mechanics: self-healing trusts from the first ticket (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("trusting_policies")

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
AWX = DEPLOY / "awx"
RUNDECK = DEPLOY / "rundeck"
PACK = DEPLOY / "stackstorm" / "warden"
SCRIPT = AWX / "files" / "warden-job.sh"
CALLBACK = AWX / "files" / "warden_callback.py"
COPIES = {
    SCRIPT: [RUNDECK / "warden-job.sh", PACK / "actions" / "warden-job.sh"],
    CALLBACK: [RUNDECK / "warden_callback.py", PACK / "actions" / "lib" / "warden_callback.py"],
}
RUNDECK_INSTALL_DIR = "/var/lib/rundeck/warden/"

SECRET = "the-secret-warden-shares-with-its-automation"
SECRET_ENV = "WARDEN_TARGET_TEST_SECRET"
SYSTEMS = ["awx", "rundeck", "stackstorm"]


@dataclass(frozen=True)
class Job:
    run_action: str
    rollback_action: str
    awx_template: str
    rundeck_job: str
    stackstorm_rule: str
    webhook: str


JOBS = {
    "deploy": Job(
        "roll_back_deploy",
        "restore_deploy",
        "job-template-roll-back-deploy.json",
        "roll-back-deploy",
        "roll_back_deploy",
        "warden-roll-back-deploy",
    ),
    "scale": Job(
        "scale_out",
        "scale_in",
        "job-template-scale-out.json",
        "scale-out",
        "scale_out",
        "warden-scale-out",
    ),
}

# What each system calls the site's settings of a job (README: deploy/handoff).
AWX_NAMES = {
    "root": "deploy_root",
    "unit": "deploy_unit",
    "health_url": "{job}_health_url",
    "health_timeout": "{job}_health_timeout",
    "state_dir": "handoff_state_dir",
    "template": "scale_template",
    "count": "scale_count",
    "ceiling": "scale_ceiling",
    "port_base": "scale_port_base",
}
RUNDECK_NAMES = {"root": "app_root", "unit": "app_unit"}


def requires_tool(name: str, why: str) -> None:
    """Skip without the tool, but fail in CI, which installs it."""
    if os.environ.get("CI"):
        pytest.fail(f"{name} is missing, and CI installs it ({why})")
    pytest.skip(f"{name} is not installed ({why})")


def free_port(span: int = 0) -> int:
    """A port that is free, with the `span` ports after it free too."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port + span < 65536 and all(_free(port + n) for n in range(1, span + 1)):
            return port


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# -- the host: a scratch root, and systemctl's stand-in -------------------------------------

STANDIN_SYSTEMCTL = '''
"""A stand-in for systemctl (this machine runs no systemd): a unit is a python http.server
process serving the directory its units.json entry names, resolved when the unit starts."""

import fnmatch
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

STATE = Path(os.environ["FAKE_SYSTEMD_DIR"])


def settings_of(unit):
    units = json.loads((STATE / "units.json").read_text())
    if unit in units:
        return units[unit]
    name, _, instance = unit.removesuffix(".service").partition("@")
    template = units.get(f"{name}@.service")
    if template is None or not instance.isdigit():
        return None
    return {"serve": template["serve"], "port": template["port_base"] + int(instance)}


def pid_file(unit):
    return STATE / f"{unit}.pid"


def running(unit):
    try:
        pid = int(pid_file(unit).read_text())
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    return None if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X") else pid


def start(unit):
    settings = settings_of(unit)
    if settings is None:
        print(f"Failed to start {unit}: Unit {unit} not found.", file=sys.stderr)
        return 5
    if not running(unit):
        process = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(settings["port"]), "--bind",
             "127.0.0.1", "--directory", os.path.realpath(settings["serve"])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        pid_file(unit).write_text(str(process.pid))
    return 0


def stop(unit):
    pid = running(unit)
    if pid:
        os.kill(pid, signal.SIGTERM)
        for _ in range(200):
            if not running(unit):
                break
            time.sleep(0.05)
    pid_file(unit).unlink(missing_ok=True)
    return 0


def main(argv):
    with (STATE / "calls.log").open("a") as log:
        log.write(" ".join(argv) + "\\n")
    words = [word for word in argv if not word.startswith("-")]
    verb, units = words[0], words[1:]
    if verb in ("start", "stop", "restart"):
        for unit in units:
            if verb != "start":
                stop(unit)
            if verb != "stop" and start(unit):
                return 5
        return 0
    if verb == "is-active":
        active = all(running(unit) for unit in units)
        if "--quiet" not in argv:
            print("active" if active else "inactive")
        return 0 if active else 3
    if verb == "list-units":
        for path in sorted(STATE.glob("*.pid")):
            unit = path.name.removesuffix(".pid")
            if running(unit) and all(fnmatch.fnmatch(unit, pattern) for pattern in units):
                print(f"{unit} loaded active running {unit}")
        return 0
    print(f"systemctl stand-in: cannot {verb}", file=sys.stderr)
    return 1


sys.exit(main(sys.argv[1:]))
'''


@dataclass
class Host:
    """The machine the jobs run on, as Warden's agent calls it ("web-01")."""

    name: str
    root: Path
    state_dir: Path
    units_dir: Path
    instance_dir: Path
    app_port: int
    port_base: int
    env: dict[str, str]
    work_dir: Path

    def current(self) -> str:
        return os.readlink(self.root / "current")

    def systemctl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["systemctl", *args], env=self.env, capture_output=True, text=True, check=False
        )

    def active_units(self) -> list[str]:
        listed = self.systemctl("list-units", "--state=active", "--plain", "--no-legend", "*")
        return sorted(line.split()[0] for line in listed.stdout.splitlines())

    def calls(self) -> list[str]:
        log = self.units_dir / "calls.log"
        return log.read_text().splitlines() if log.exists() else []

    def settings(self, job: str) -> dict[str, Any]:
        """The site's settings of `job` for this host, as an operator sets them."""
        common = {"health_timeout": 2, "state_dir": str(self.state_dir)}
        if job == "deploy":
            return {
                **common,
                "root": str(self.root),
                "unit": "app.service",
                "health_url": f"http://127.0.0.1:{self.app_port}/health",
            }
        return {
            **common,
            "template": "app@.service",
            "count": 2,
            "ceiling": 3,
            "health_url": "http://127.0.0.1:{port}/health",
            "port_base": self.port_base,
        }


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    """Releases 1.3.9, 1.4.0 and 1.4.1 (current, the failed deploy), each with a health
    page; app.service and app@1.service running; units.json says what each unit serves."""
    root = tmp_path / "srv" / "app"
    for version in ("1.3.9", "1.4.0", "1.4.1"):
        (root / "releases" / version).mkdir(parents=True)
        (root / "releases" / version / "health").write_text(f"{version} ok\n")
    (root / "current").symlink_to("releases/1.4.1")
    instance_dir = tmp_path / "instance"
    instance_dir.mkdir()
    (instance_dir / "health").write_text("instance ok\n")
    bin_dir, units_dir = tmp_path / "bin", tmp_path / "units"
    bin_dir.mkdir()
    units_dir.mkdir()
    systemctl = bin_dir / "systemctl"
    systemctl.write_text(f"#!{sys.executable}\n{STANDIN_SYSTEMCTL}")
    systemctl.chmod(0o755)
    app_port, port_base = free_port(), free_port(span=4)
    units = {
        "app.service": {"serve": str(root / "current"), "port": app_port},
        "app@.service": {"serve": str(instance_dir), "port_base": port_base},
    }
    (units_dir / "units.json").write_text(json.dumps(units))
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_SYSTEMD_DIR": str(units_dir),
    }
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    machine = Host(
        "web-01",
        root,
        tmp_path / "state",
        units_dir,
        instance_dir,
        app_port,
        port_base,
        env,
        work_dir,
    )
    for unit in ("app.service", "app@1.service"):
        assert machine.systemctl("start", unit).returncode == 0
    yield machine
    for pid_file in units_dir.glob("*.pid"):  # the unit processes this test started
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text()), signal.SIGTERM)


def run_job(host: Host, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SCRIPT), *args],
        env=host.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@dataclass
class JobRun:
    """What the automation system shows: did its job succeed, and its log."""

    succeeded: bool
    log: str


# -- AWX: ansible-playbook runs the job template's playbook ---------------------------------


def ansible_playbook() -> str:
    found = shutil.which("ansible-playbook", path=str(Path(sys.executable).parent))
    if found is None:
        requires_tool("ansible-playbook", "pip install ansible-core, requirements-dev.txt")
    return found


def awx_names(job: str) -> dict[str, str]:
    prefix = "deploy" if job == "deploy" else "scale"
    return {key: name.format(job=prefix) for key, name in AWX_NAMES.items()}


def run_awx(launch: dict, job: str, host: Host, secret: str = SECRET) -> JobRun:
    """The job template launched as AWX does: its extra vars as this site set them, the
    launch's over them; the credential type injects the secret into the environment."""
    template = json.loads((AWX / JOBS[job].awx_template).read_text())
    names = awx_names(job)
    site = {names[key]: value for key, value in host.settings(job).items()}
    extra_vars = {**yaml.safe_load(template["extra_vars"]), **site, **launch["extra_vars"]}
    vars_file = host.work_dir / "extra_vars.json"
    vars_file.write_text(json.dumps(extra_vars))
    inventory = host.work_dir / "inventory"
    inventory.write_text(
        f"{host.name} ansible_connection=local ansible_python_interpreter={sys.executable}\n"
    )
    extra = ["-e", f"@{vars_file}"]
    ansible_home = host.work_dir / "ansible"
    env = {
        **host.env,
        "WARDEN_HANDOFF_SECRET": secret,
        "ANSIBLE_HOME": str(ansible_home),
        "ANSIBLE_LOCAL_TEMP": str(ansible_home / "tmp"),
        "ANSIBLE_REMOTE_TEMP": str(ansible_home / "remote"),
        "ANSIBLE_NOCOLOR": "1",
    }
    ran = subprocess.run(
        [ansible_playbook(), "-i", str(inventory), str(ROOT / template["playbook"]), *extra],
        env=env,
        cwd=host.work_dir,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return JobRun(ran.returncode == 0, ran.stdout + ran.stderr)


# -- Rundeck: the job definition followed step by step ---------------------------------------

REFERENCE = re.compile(r"\$\{(option|data)\.([^}]+)\}")


def rundeck_job(name: str) -> dict:
    jobs = yaml.safe_load((RUNDECK / "warden-jobs.yaml").read_text())
    [job] = [job for job in jobs if job["name"] == name]
    return job


def rundeck_options(job: dict, given: dict[str, str], key_storage: dict[str, str]) -> dict:
    """The execution's options as Rundeck settles them: given, else the default, else the
    Key Storage value of a secure option; required present, regex and enforced values met."""
    options = {}
    for option in job["options"]:
        name = option["name"]
        value = given.get(name, option.get("value"))
        if value is None and option.get("storagePath"):
            value = key_storage.get(option["storagePath"])
        if value is None:
            assert not option.get("required"), f"Rundeck refuses the run: {name} is required"
            continue
        assert isinstance(value, str), f"Rundeck options are strings: {name}={value!r}"
        if "regex" in option:
            assert re.fullmatch(option["regex"], value), f"{name}={value!r} fails its regex"
        if option.get("enforced"):
            assert value in option["values"], f"{name}={value!r} is not an allowed value"
        options[name] = value
    return options


def expand(word: str, context: dict[str, dict[str, str]]) -> str:
    """Rundeck's ${option.x} and ${data.x}; a reference it cannot fill stays as written."""
    return REFERENCE.sub(lambda m: context[m[1]].get(m[2], m[0]), word)


def installed_file(path: str) -> Path:
    """A file the README installs in /var/lib/rundeck/warden/, as this repository has it."""
    assert path.startswith(RUNDECK_INSTALL_DIR), path
    return RUNDECK / path.removeprefix(RUNDECK_INSTALL_DIR)


def run_rundeck(launch: dict, job: str, host: Host, secret: str = SECRET) -> JobRun:
    definition = rundeck_job(JOBS[job].rundeck_job)
    site = {RUNDECK_NAMES.get(key, key): str(value) for key, value in host.settings(job).items()}
    options = rundeck_options(
        definition, {**site, **launch["options"]}, {"keys/warden/handoff-secret": secret}
    )
    node_filter = expand(definition["nodefilters"]["filter"], {"option": options, "data": {}})
    assert node_filter == f"name: {host.name}", node_filter
    context: dict[str, dict[str, str]] = {"option": options, "data": {}}
    log: list[str] = []
    assert definition["sequence"]["strategy"] == "node-first"
    for step in definition["sequence"]["commands"]:
        if run_rundeck_step(step, context, host, log):
            continue
        handler = step.get("errorhandler")
        if handler:
            run_rundeck_step(handler, context, host, log)
        return JobRun(False, "\n".join(log))
    return JobRun(True, "\n".join(log))


def run_rundeck_step(step: dict, context: dict, host: Host, log: list[str]) -> bool:
    if "scriptfile" in step:
        # args are split like a command line, then each word's references filled
        args = [expand(word, context) for word in shlex.split(step.get("args", ""))]
        ran = subprocess.run(
            [str(installed_file(step["scriptfile"])), *args],
            env=host.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        output = ran.stdout + ran.stderr
        for log_filter in step.get("plugins", {}).get("LogFilter", []):
            assert log_filter["type"] == "key-value-data"
            pattern = re.compile(log_filter["config"]["regex"])
            for line in output.splitlines():
                found = pattern.match(line)
                if found:
                    context["data"][found[1]] = found[2]
    else:
        assert (step["type"], step["nodeStep"]) == ("localexec", True), step
        words = [expand(word, context) for word in shlex.split(step["configuration"]["command"])]
        program, script, *args = words
        # The Local Command's environment is the data context's RD_* variables, nothing else.
        env = {f"RD_OPTION_{name.upper()}": value for name, value in context["option"].items()}
        ran = subprocess.run(
            [program, str(installed_file(script)), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        output = ran.stdout + ran.stderr
    log.append(output)
    return ran.returncode == 0


# -- StackStorm: rule, orquesta workflow, runners ---------------------------------------------

RUNNER_PARAMETERS = {"hosts", "sudo", "timeout", "username", "private_key", "cwd", "env"}

ST2_ACTION_STANDIN = '''
class Action:
    """st2common.runners.base_action.Action, as the python-script runner gives it."""

    def __init__(self, config=None, action_service=None):
        self.config = config
        self.action_service = action_service
'''

ST2_RUNNER_STANDIN = """
import importlib.util, json, os, sys

stub, actions, entry_point = sys.argv[1:4]
sys.path[:0] = [stub, actions]
from st2common.runners.base_action import Action

class ActionService:
    def __init__(self, values):
        self.values = values

    def get_value(self, name, local=True, scope="system", decrypt=False):
        value = self.values.get(name)
        return value if decrypt or value is None else "<encrypted>"


spec = importlib.util.spec_from_file_location("st2_action", entry_point)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
[action_class] = [
    value for value in vars(module).values()
    if isinstance(value, type) and issubclass(value, Action) and value is not Action
]
datastore = json.loads(os.environ["ST2_STANDIN_DATASTORE"])
action = action_class(config={}, action_service=ActionService(datastore))
result = action.run(**json.loads(sys.stdin.read()))
status, value = result if isinstance(result, tuple) else (True, result)
print(json.dumps({"succeeded": status, "result": value}))
"""


def jinja() -> Any:
    try:
        from jinja2.nativetypes import NativeEnvironment
    except ImportError:
        requires_tool("jinja2", "StackStorm's expressions; ansible-core brings it")
    return NativeEnvironment()


def render(value: Any, **names: Any) -> Any:
    if not isinstance(value, str) or "{{" not in value:
        return value
    return jinja().from_string(value).render(**names)


def pack_yaml(path: str) -> dict:
    return yaml.safe_load((PACK / path).read_text())


def pack_action(ref: str) -> dict:
    pack, name = ref.split(".")
    assert pack == "warden", ref
    return pack_yaml(f"actions/{name}.yaml")


CASTS: dict[str, Callable[[Any], Any]] = {
    "integer": int,
    "string": str,
    "boolean": lambda value: value in (True, "true", "True"),
}


def typed(meta: dict, values: dict) -> dict:
    """Parameters as st2 casts them: its metadata's defaults, then the values, by type."""
    specs = meta["parameters"]
    parameters = {name: spec["default"] for name, spec in specs.items() if "default" in spec}
    parameters.update(values)
    return {
        name: CASTS[specs[name]["type"]](value)
        if value is not None and "type" in specs.get(name, {})
        else value
        for name, value in parameters.items()
    }


@dataclass
class StackStorm:
    """StackStorm's runners as they treat the pack, on this machine (the host)."""

    host: Host
    datastore: dict[str, str]
    stub: Path = field(init=False)

    def __post_init__(self) -> None:
        self.stub = self.host.work_dir / "st2-standin"
        runners = self.stub / "st2common" / "runners"
        runners.mkdir(parents=True, exist_ok=True)
        for package in (self.stub / "st2common", runners):
            (package / "__init__.py").touch()
        (runners / "base_action.py").write_text(ST2_ACTION_STANDIN)
        (self.stub / "run_action.py").write_text(ST2_RUNNER_STANDIN)

    def run_action(self, ref: str, values: dict) -> tuple[bool, Any]:
        meta = pack_action(ref)
        parameters = typed(meta, values)
        entry_point = PACK / "actions" / meta["entry_point"]
        if meta["runner_type"] == "remote-shell-script":
            return self.remote_script(meta, entry_point, parameters)
        assert meta["runner_type"] == "python-script", meta["runner_type"]
        paths = [str(self.stub), str(PACK / "actions"), str(entry_point)]
        ran = subprocess.run(
            [sys.executable, str(self.stub / "run_action.py"), *paths],
            input=json.dumps(parameters),
            env={**self.host.env, "ST2_STANDIN_DATASTORE": json.dumps(self.datastore)},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert ran.returncode == 0, ran.stderr
        answer = json.loads(ran.stdout)
        return answer["succeeded"], answer["result"]

    def remote_script(self, meta: dict, entry_point: Path, parameters: dict) -> tuple[bool, Any]:
        """Named parameters as --name=value (empty ones left out), then the positional ones,
        as st2's remote runner builds the command; run on this machine, the host."""
        specs = meta["parameters"]
        named, positional = [], []
        for name, value in parameters.items():
            if name in RUNNER_PARAMETERS or value is None or value == "":
                continue
            if "position" in specs[name]:
                positional.append((specs[name]["position"], str(value)))
            elif value is True:
                named.append(f"--{name}")
            else:
                named.append(f"--{name}={value}")
        ran = subprocess.run(
            [str(entry_point), *named, *[value for _, value in sorted(positional)]],
            env=self.host.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        result = {
            "stdout": ran.stdout,
            "stderr": ran.stderr,
            "return_code": ran.returncode,
            "succeeded": ran.returncode == 0,
            "failed": ran.returncode != 0,
        }
        return ran.returncode == 0, {parameters["hosts"]: result}

    def run_workflow(self, meta: dict, parameters: dict) -> tuple[bool, list[str]]:
        workflow = pack_yaml(f"actions/{meta['entry_point']}")
        assert workflow["version"] == 1.0
        ctx = {name: parameters.get(name) for name in workflow["input"]}
        for variable in workflow.get("vars", []):
            ctx.update(variable)
        log, task = [], "work"
        while task:
            spec = workflow["tasks"][task]
            values = {key: render(value, ctx=lambda: ctx) for key, value in spec["input"].items()}
            succeeded, result = self.run_action(spec["action"], values)
            log.append(f"{task}: {json.dumps(result)}")

            def names(succeeded: bool = succeeded, result: Any = result) -> dict:
                return {
                    "ctx": lambda: ctx,
                    "result": lambda: result,
                    "succeeded": lambda: succeeded,
                    "failed": lambda: not succeeded,
                }

            task = None
            for transition in spec.get("next", []):
                if render(transition["when"], **names()) is True:
                    for item in transition.get("publish", []):
                        ctx.update({k: render(v, **names()) for k, v in item.items()})
                    task = transition["do"]
                    break
            else:
                if not succeeded:
                    return False, log
            if task == "fail":
                return False, log
        return True, log


def run_stackstorm(launch: dict, job: str, host: Host, secret: str = SECRET) -> JobRun:
    """The webhook's trigger through the rule to the workflow, as StackStorm runs it."""
    rule = pack_yaml(f"rules/{JOBS[job].stackstorm_rule}.yaml")
    assert rule["trigger"]["type"] == "core.st2.webhook"
    assert rule["trigger"]["parameters"]["url"] == JOBS[job].webhook
    trigger = {"body": launch, "headers": {}}
    for key, criterion in rule["criteria"].items():
        value: Any = {"trigger": trigger}
        for part in key.split("."):
            value = value[part]
        assert criterion["type"] == "regex"
        assert re.search(criterion["pattern"], value), f"the rule does not match {key}={value}"
    parameters = {
        name: render(value, trigger=trigger) for name, value in rule["action"]["parameters"].items()
    }
    parameters.update(host.settings(job))  # the site's settings, as an operator sets them
    meta = pack_action(rule["action"]["ref"])
    assert meta["runner_type"] == "orquesta"
    system = StackStorm(host, {"warden_handoff_secret": secret})
    succeeded, log = system.run_workflow(meta, typed(meta, parameters))
    return JobRun(succeeded, "\n".join(log))


RUNNERS: dict[str, Callable[..., JobRun]] = {
    "awx": run_awx,
    "rundeck": run_rundeck,
    "stackstorm": run_stackstorm,
}


# -- Warden: a real execution, claimed and handed off ----------------------------------------


def launch_path(system: str, job: str) -> str:
    if system == "awx":
        return "/api/v2/job_templates/7/launch/"
    if system == "rundeck":
        return f"/api/41/job/{rundeck_job(JOBS[job].rundeck_job)['uuid']}/run"
    return f"/api/v1/webhooks/{JOBS[job].webhook}"


def warden_of(system: str, launch: dict) -> dict:
    """The `warden` payload out of the system's launch body."""
    if system == "awx":
        return launch["extra_vars"]["warden"]
    if system == "rundeck":
        options = launch["options"]
        return {
            "execution_id": int(options["warden_execution_id"]),
            "token": int(options["warden_token"]),
            "kind": options["warden_kind"],
        }
    return launch["warden"]


@dataclass
class Warden:
    """One hand-off: the receiver standing in for the system's API, and what it got."""

    receiver: Receiver
    system: str
    job: str

    def launches(self) -> list[dict]:
        return [json.loads(request["raw"]) for request in self.receiver.requests]

    def execution(self) -> Execution:
        first = warden_of(self.system, self.launches()[0])
        return Execution.objects.get(pk=first["execution_id"])

    def run(self, launch: dict, host: Host, **options: Any) -> JobRun:
        return RUNNERS[self.system](launch, self.job, host, **options)


@pytest.fixture
def hand_off(
    live_server: Any, settings: Any, monkeypatch: pytest.MonkeyPatch, alice: Any, agent: Any
) -> Iterator[Callable[[str, str], Warden]]:
    """hand_off(system, job): the disk runbook, named as the job's actions, run by the
    system; a full disk makes Warden hand the run off. Callbacks go to live_server."""
    monkeypatch.setenv(SECRET_ENV, SECRET)
    settings.WARDEN_CALLBACK_BASE_URL = live_server.url
    # the systems' stand-ins listen on loopback, which Warden refuses unless allowed
    settings.WARDEN_OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    receivers: list[Receiver] = []

    def start(system: str, job: str) -> Warden:
        receiver = Receiver()
        receivers.append(receiver)
        target = AutomationTarget(
            name=system,
            kind=system,
            url=receiver.url + launch_path(system, job),
            secret_env=SECRET_ENV,
            lease_seconds=600,
        )
        why = f"{system} runs {job}"
        save_automation_target(target, actor=alice, reason=why, now=timezone.now())
        runbook = Runbook.objects.get(name="clean-temp-and-rotate-logs")
        runbook.action, runbook.rollback_action = JOBS[job].run_action, JOBS[job].rollback_action
        runbook.handoff_target = target
        save_runbook(runbook, actor=alice, reason=why, now=timezone.now())
        agent.post_metrics(agent.sample("disk"))
        assert len(receiver.requests) == 1, "Warden handed the run off"
        return Warden(receiver, system, job)

    yield start
    for receiver in receivers:
        receiver.server.shutdown()
        receiver.server.server_close()


live_database = pytest.mark.django_db(transaction=True, serialized_rollback=True)


# -- the jobs, run by each system, reporting to Warden --------------------------------------


@live_database
@pytest.mark.parametrize("system", SYSTEMS)
def test_rolling_back_a_failed_deploy_switches_current_and_warden_takes_the_report(
    system, hand_off, host
):
    warden = hand_off(system, "deploy")
    [launch] = warden.launches()

    ran = warden.run(launch, host)

    assert ran.succeeded, ran.log
    assert host.current() == "releases/1.4.0"
    assert "restart app.service" in host.calls()
    execution = warden.execution()
    assert execution.state == "verifying"
    assert f"switched {host.root}/current from 1.4.1 to 1.4.0" in execution.output
    assert f"http://127.0.0.1:{host.app_port}/health answered 200" in execution.output


@live_database
@pytest.mark.parametrize("system", SYSTEMS)
def test_scaling_out_starts_instances_up_to_the_ceiling_and_warden_takes_the_report(
    system, hand_off, host
):
    warden = hand_off(system, "scale")
    [launch] = warden.launches()

    ran = warden.run(launch, host)

    assert ran.succeeded, ran.log
    # two asked, one already running, the ceiling three
    assert host.active_units() == ["app.service", "app@1.service", "app@2.service", "app@3.service"]
    execution = warden.execution()
    assert execution.state == "verifying"
    assert "started app@2.service app@3.service" in execution.output
    assert "each is active and healthy" in execution.output


@live_database
@pytest.mark.parametrize("system", SYSTEMS)
def test_a_deploy_rollback_that_fails_its_health_check_is_undone_through_the_same_system(
    system, hand_off, host
):
    (host.root / "releases" / "1.4.0" / "health").unlink()  # the previous release is broken too
    warden = hand_off(system, "deploy")
    [run] = warden.launches()

    failed = warden.run(run, host)

    assert not failed.succeeded
    assert host.current() == "releases/1.4.0"
    execution = warden.execution()
    assert execution.state == "rolling_back"
    assert "answered 404, not 2xx" in execution.output
    # Warden handed the rollback to the same system, with the next token
    rollback = warden.launches()[1]
    assert warden_of(system, rollback)["kind"] == "rollback"
    assert warden_of(system, rollback)["token"] == warden_of(system, run)["token"] + 1

    undone = warden.run(rollback, host)

    assert undone.succeeded, undone.log
    assert host.current() == "releases/1.4.1"
    execution.refresh_from_db()
    assert execution.state == "rolled_back"
    assert f"switched {host.root}/current back from 1.4.0 to 1.4.1" in execution.rollback_output


@live_database
@pytest.mark.parametrize("system", SYSTEMS)
def test_a_scale_out_with_unhealthy_instances_is_undone_through_the_same_system(
    system, hand_off, host
):
    (host.instance_dir / "health").unlink()  # new instances start, but answer 404
    warden = hand_off(system, "scale")
    [run] = warden.launches()

    failed = warden.run(run, host)

    assert not failed.succeeded
    assert "app@2.service" in host.active_units()
    assert warden.execution().state == "rolling_back"
    rollback = warden.launches()[1]
    assert warden_of(system, rollback)["kind"] == "rollback"

    undone = warden.run(rollback, host)

    assert undone.succeeded, undone.log
    assert host.active_units() == ["app.service", "app@1.service"]  # only the ones it started
    execution = warden.execution()
    assert execution.state == "rolled_back"
    assert "stopped app@2.service app@3.service" in execution.rollback_output


@live_database
@pytest.mark.parametrize("system", SYSTEMS)
def test_a_report_signed_with_another_secret_is_refused_and_the_job_fails(system, hand_off, host):
    warden = hand_off(system, "deploy")
    [launch] = warden.launches()

    ran = warden.run(launch, host, secret="not-the-shared-secret")

    assert not ran.succeeded
    assert "HTTP 401 bad_signature" in ran.log
    assert host.current() == "releases/1.4.0"  # the work was done; its report is refused
    execution = warden.execution()
    assert execution.state == "running"  # past the lease, the host's metrics decide
    assert execution.output == ""


@live_database
def test_a_late_report_with_the_runs_token_is_refused_during_the_rollback(hand_off, host):
    (host.root / "releases" / "1.4.0" / "health").unlink()
    warden = hand_off("rundeck", "deploy")
    [run] = warden.launches()
    assert not warden.run(run, host).succeeded  # Warden now rolls back, with a new token

    replayed = warden.run(run, host)  # the system runs the old request again

    assert not replayed.succeeded
    assert "HTTP 409 stale_token" in replayed.log
    assert host.current() == "releases/1.4.0"  # not 1.3.9: a repeated run changes nothing twice
    assert warden.execution().state == "rolling_back"
    assert warden.run(warden.launches()[1], host).succeeded
    assert warden.execution().state == "rolled_back"


# -- the job script's own rules ---------------------------------------------------------------


def deploy_args(host: Host, kind: str = "run", execution: str = "5", **extra: str) -> list[str]:
    action = "roll_back_deploy" if kind == "run" else "restore_deploy"
    settings = host.settings("deploy")
    args = ["deploy-rollback", kind, "--execution-id", execution, "--action", action]
    for key, value in {**settings, **extra}.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def scale_args(host: Host, kind: str = "run", execution: str = "6", **extra: str) -> list[str]:
    action = "scale_out" if kind == "run" else "scale_in"
    args = [f"--execution_id={execution}", f"--action={action}", "scale-out", kind]
    for key, value in {**host.settings("scale"), **extra}.items():
        args.append(f"--{key}={value}")
    return args


def summary(ran: subprocess.CompletedProcess) -> str:
    last = ran.stdout.splitlines()[-1]
    assert last.startswith("warden_summary="), ran.stdout
    return last.removeprefix("warden_summary=")


def test_a_repeated_run_does_not_step_back_twice(host):
    first = run_job(host, *deploy_args(host))
    again = run_job(host, *deploy_args(host))

    assert (first.returncode, again.returncode) == (0, 0), first.stdout + again.stdout
    assert host.current() == "releases/1.4.0"
    assert "already switched" in again.stdout


def test_the_rollback_leaves_alone_a_release_someone_else_chose(host):
    assert run_job(host, *deploy_args(host)).returncode == 0
    (host.root / "current").unlink()
    (host.root / "current").symlink_to("releases/1.3.9")  # a person deployed meanwhile

    ran = run_job(host, *deploy_args(host, "rollback"))

    assert ran.returncode == 1
    assert host.current() == "releases/1.3.9"
    assert "points to 1.3.9, neither 1.4.0" in summary(ran)


def test_a_rollback_with_nothing_recorded_changes_nothing(host):
    ran = run_job(host, *deploy_args(host, "rollback", execution="77"))

    assert ran.returncode == 0
    assert summary(ran) == "nothing to undo: execution 77 switched no release on this host"
    assert host.current() == "releases/1.4.1"


def test_the_switch_is_a_rename_so_current_is_never_missing(host):
    ran = run_job(host, *deploy_args(host, to="1.3.9"))

    assert ran.returncode == 0, ran.stdout
    assert host.current() == "releases/1.3.9"
    assert sorted(p.name for p in host.root.iterdir()) == ["current", "releases"]


def test_an_action_the_job_does_not_serve_changes_nothing(host):
    args = deploy_args(host)
    args[args.index("roll_back_deploy")] = "clean_temp_and_rotate_logs"
    calls = len(host.calls())

    ran = run_job(host, *args)

    assert ran.returncode == 2
    assert ran.stderr.strip().splitlines() == [
        'warden-job: Warden asked for "clean_temp_and_rotate_logs"; '
        'this job\'s run is "roll_back_deploy"'
    ]
    assert host.current() == "releases/1.4.1" and len(host.calls()) == calls


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["deploy-rollback"], "usage: warden-job.sh"),
        (["rebuild", "run"], 'unknown job "rebuild"'),
        (
            ["deploy-rollback", "run", "--execution-id", "x", "--action", "a"],
            "is not an execution id",
        ),
        (
            ["scale-out", "run", "--execution-id", "1", "--action", "scale_out", "--count", "-1"],
            '--count "-1" is not a positive number',
        ),
        (
            ["scale-out", "run", "--execution-id", "1", "--action", "scale_out", "--root", "/x"],
            "--root is not an option of scale-out",
        ),
        (
            [
                "deploy-rollback",
                "run",
                "--execution-id",
                "1",
                "--action",
                "roll_back_deploy",
                "--root",
                "/nonexistent",
            ],
            "/nonexistent/releases is not a directory",
        ),
    ],
)
def test_bad_input_is_one_line_on_stderr(host, args, error):
    ran = run_job(host, *args)

    assert ran.returncode == 2
    [line] = ran.stderr.splitlines()
    assert line.startswith("warden-job: ") and error in line


def test_scaling_out_stops_at_the_ceiling(host):
    host.systemctl("start", "app@2.service")
    host.systemctl("start", "app@3.service")

    ran = run_job(host, *scale_args(host))

    assert ran.returncode == 1
    assert summary(ran) == (
        "3 instances of app@.service are active and the ceiling is 3: started none"
    )
    assert not [call for call in host.calls() if call.startswith("start app@4")]


def test_scaling_out_starts_fewer_when_the_ceiling_is_near_and_its_rollback_stops_only_those(
    host,
):
    host.systemctl("start", "app@2.service")

    ran = run_job(host, *scale_args(host))
    undone = run_job(host, *scale_args(host, "rollback"))

    assert ran.returncode == 0, ran.stdout
    assert "started app@3.service (1 of 2 asked: the ceiling is 3)" in summary(ran)
    assert undone.returncode == 0, undone.stdout
    assert host.active_units() == ["app.service", "app@1.service", "app@2.service"]


# -- the callback script ---------------------------------------------------------------------


def test_the_callback_signs_the_exact_bytes_and_sends_the_end_of_a_long_output(tmp_path):
    receiver = Receiver()
    receiver.status, receiver.answer = 200, {"execution_id": 9, "state": "verifying"}
    long_output = "".join(f"line {n}\n" for n in range(3000))
    url = f"{receiver.url}/api/v1/executions/9/callback"
    arguments = ["--token", "3", "--ok", "true", "--output-file", "-"]
    try:
        ran = subprocess.run(
            [sys.executable, str(CALLBACK), "--url", url, *arguments],
            input=long_output,
            env={**os.environ, "WARDEN_HANDOFF_SECRET": SECRET},
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()

    assert ran.returncode == 0, ran.stderr
    assert "execution 9 is verifying" in ran.stdout
    [request] = receiver.requests
    header = request["headers"]["X-Warden-Signature"]
    now = datetime.now(UTC).timestamp()
    # signed over the method, the callback URL's path (so the execution) and the body
    assert request["path"] == "/api/v1/executions/9/callback"
    assert handoff.signature_valid(SECRET, header, "POST", request["path"], request["raw"], now, 60)
    assert header.startswith("t=") and ",v2=" in header
    # the same signature is no good at another execution's callback
    other = "/api/v1/executions/10/callback"
    assert not handoff.signature_valid(SECRET, header, "POST", other, request["raw"], now, 60)
    body = json.loads(request["raw"])
    assert (body["token"], body["ok"]) == (3, True)
    assert len(body["output"]) == 10_000 and long_output.endswith(body["output"])


@pytest.mark.parametrize(
    ("args", "env", "error"),
    [
        (["--token", "3"], {}, "WARDEN_HANDOFF_SECRET is not set"),
        (["--token", "three"], {"WARDEN_HANDOFF_SECRET": SECRET}, "is not a token"),
    ],
)
def test_the_callback_refuses_bad_input_in_one_line(args, env, error):
    environment = {k: v for k, v in os.environ.items() if k != "WARDEN_HANDOFF_SECRET"}
    ran = subprocess.run(
        [sys.executable, str(CALLBACK), "--url", "http://127.0.0.1:9/cb", "--ok", "true", *args],
        env={**environment, **env},
        capture_output=True,
        text=True,
        check=False,
    )

    assert ran.returncode == 2
    [line] = ran.stderr.splitlines()
    assert line.startswith("warden-callback: ") and error in line


# -- the definitions: they parse and carry what each product requires ----------------------


def test_each_system_ships_the_same_scripts():
    # one source in deploy/awx/files, linked from the others
    for original, copies in COPIES.items():
        for copy in copies:
            assert copy.read_bytes() == original.read_bytes(), f"{copy} differs from {original}"
            assert os.access(copy, os.X_OK) or copy.suffix == ".py", f"{copy} is not executable"


def test_the_job_script_is_valid_bash():
    ran = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True, check=False)
    assert ran.returncode == 0, ran.stderr


def script_options(job: str) -> set[str]:
    """The options warden-job.sh takes for `job`, as it lists them."""
    text = SCRIPT.read_text()
    block = text[text.index(f"{job})") :]
    return set(re.search(r'known="([^"]+)"', block)[1].split())


def playbook_variables(playbook: Path) -> set[str]:
    return set(yaml.safe_load(playbook.read_text())[0]["vars"])


@pytest.mark.parametrize("job", JOBS)
def test_the_awx_job_template_takes_wardens_extra_vars_and_names_its_playbook(job):
    template = json.loads((AWX / JOBS[job].awx_template).read_text())

    for required in ("name", "job_type", "inventory", "project", "playbook"):
        assert required in template, f"AWX's job template needs {required}"
    assert template["job_type"] == "run"
    # Warden launches with {"extra_vars": {"warden": {...}}}: only a template that prompts
    # for variables on launch keeps them (a survey could not carry the warden object).
    assert template["ask_variables_on_launch"] is True and template["survey_enabled"] is False
    playbook = ROOT / template["playbook"]
    assert playbook.is_file()
    plays = yaml.safe_load(playbook.read_text())
    assert plays[0]["hosts"] == "{{ warden.host }}"
    assert plays[-1] == {
        "name": "Report to Warden",
        "ansible.builtin.import_playbook": "report-to-warden.yml",
    }
    assert set(yaml.safe_load(template["extra_vars"])) == playbook_variables(playbook)
    assert template["become_enabled"] is True  # the work needs root; the report play opts out
    assert template["timeout"] < AutomationTarget._meta.get_field("lease_seconds").default


def test_the_awx_credential_type_injects_the_secret_the_report_play_signs_with():
    credential = json.loads((AWX / "credential-type-warden-handoff.json").read_text())

    assert credential["kind"] in ("cloud", "net")  # the kinds AWX lets people create
    fields = {field["id"]: field for field in credential["inputs"]["fields"]}
    assert fields["secret"]["secret"] is True and credential["inputs"]["required"] == ["secret"]
    assert credential["injectors"]["env"] == {"WARDEN_HANDOFF_SECRET": "{{ secret }}"}
    report = yaml.safe_load((AWX / "report-to-warden.yml").read_text())[0]
    assert report["become"] is False and report["connection"] == "local"
    # the callback script reads WARDEN_HANDOFF_SECRET unless told otherwise
    argv = report["tasks"][0]["ansible.builtin.command"]["argv"]
    assert "--secret-env" not in argv and "--secret-env" in CALLBACK.read_text()


def test_the_awx_playbooks_pass_ansibles_syntax_check(tmp_path):
    warden = ["-e", json.dumps({"warden": {"host": "web-01"}})]
    for job in JOBS.values():
        playbook = ROOT / json.loads((AWX / job.awx_template).read_text())["playbook"]
        ran = subprocess.run(
            [ansible_playbook(), "--syntax-check", "-i", "web-01,", str(playbook), *warden],
            env={**os.environ, "ANSIBLE_HOME": str(tmp_path), "ANSIBLE_NOCOLOR": "1"},
            capture_output=True,
            text=True,
            check=False,
        )
        assert ran.returncode == 0, ran.stdout + ran.stderr


def warden_payload_keys() -> set[str]:
    """The keys of what Warden sends (remediation.handoff.warden_payload)."""
    action = SimpleNamespace(
        execution_id=1,
        token=1,
        kind="run",
        action="a",
        runbook="r",
        ticket_id="T",
        lease_expires_at=timezone.now(),
    )
    execution = SimpleNamespace(
        commands=[], runbook_version=1, host=SimpleNamespace(name="h"), idempotency_key="k"
    )
    return set(handoff.warden_payload(action, execution, "http://w/cb"))


@pytest.mark.parametrize("job", JOBS)
def test_the_rundeck_job_defines_every_option_warden_sends_and_what_it_references(job):
    definition = rundeck_job(JOBS[job].rundeck_job)

    for required in ("name", "uuid", "sequence", "options", "nodefilters"):
        assert required in definition, f"Rundeck's job needs {required}"
    uuid.UUID(definition["uuid"])
    assert {"keepgoing", "strategy", "commands"} <= set(definition["sequence"])
    options = {option["name"]: option for option in definition["options"]}
    assert {f"warden_{key}" for key in warden_payload_keys()} <= set(options)
    text = json.dumps(definition)
    referenced = {name for group, name in REFERENCE.findall(text) if group == "option"}
    assert referenced <= set(options)
    secret = options["handoff_secret"]
    assert secret["secure"] and secret["valueExposed"] and secret["storagePath"]
    [work, report] = definition["sequence"]["commands"]
    assert installed_file(work["scriptfile"]).is_file()
    script_args = {word.split("=")[0].removeprefix("--") for word in shlex.split(work["args"])}
    assert script_args - {job_name(job), "${option.warden_kind}"} <= script_options(job_name(job))
    for step in (report, work["errorhandler"]):
        words = shlex.split(step["configuration"]["command"])
        assert words[0] == "/usr/bin/python3" and installed_file(words[1]).is_file()
        assert words[words.index("--secret-env") + 1] == "RD_OPTION_HANDOFF_SECRET"


def job_name(job: str) -> str:
    return "deploy-rollback" if job == "deploy" else "scale-out"


def test_the_rundeck_jobs_have_distinct_ids_and_their_log_filter_reads_the_summary():
    jobs = yaml.safe_load((RUNDECK / "warden-jobs.yaml").read_text())
    assert len({job["uuid"] for job in jobs}) == len(jobs) == 2
    for job in jobs:
        [log_filter] = job["sequence"]["commands"][0]["plugins"]["LogFilter"]
        found = re.match(log_filter["config"]["regex"], "warden_summary=switched a to b")
        assert found.groups() == ("warden_summary", "switched a to b")


def test_the_stackstorm_pack_is_complete():
    pack = pack_yaml("pack.yaml")
    for required in ("ref", "name", "description", "version", "author", "email"):
        assert pack.get(required), f"pack.yaml needs {required}"
    actions = {
        path.stem: pack_yaml(f"actions/{path.name}") for path in (PACK / "actions").glob("*.yaml")
    }
    for name, meta in actions.items():
        assert meta["name"] == name and meta["pack"] == "warden"
        assert (PACK / "actions" / meta["entry_point"]).is_file()
    job_parameters = set(actions["job"]["parameters"]) - RUNNER_PARAMETERS
    named = {
        name for name in job_parameters if "position" not in actions["job"]["parameters"][name]
    }
    options = script_options("deploy-rollback") | script_options("scale-out")
    assert {name.replace("_", "-") for name in named} <= options

    for rule_file in (PACK / "rules").glob("*.yaml"):
        rule = pack_yaml(f"rules/{rule_file.name}")
        assert rule["pack"] == "warden" and rule["name"] == rule_file.stem
        assert rule["trigger"]["type"] == "core.st2.webhook"
        meta = actions[rule["action"]["ref"].split(".")[1]]
        given = set(rule["action"]["parameters"])
        assert given <= set(meta["parameters"])
        required = {n for n, spec in meta["parameters"].items() if spec.get("required")}
        assert required <= given
        workflow = pack_yaml(f"actions/{meta['entry_point']}")
        assert set(workflow["input"]) == set(meta["parameters"])
        known = set(workflow["input"]) | {k for v in workflow["vars"] for k in v}
        used = set(
            re.findall(r"ctx\(\)\.(\w+)", (PACK / "actions" / meta["entry_point"]).read_text())
        )
        assert used <= known
        for task in workflow["tasks"].values():
            task_action = actions[task["action"].split(".")[1]]
            runner = (
                RUNNER_PARAMETERS if task_action["runner_type"] == "remote-shell-script" else set()
            )
            assert set(task["input"]) <= set(task_action["parameters"]) | runner
        assert workflow["tasks"]["work"]["input"]["hosts"] == "{{ ctx().warden_host }}"
