"""The agent package never needs Django: a host's agent runs without Warden's server."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Django made unimportable, then every module of the agent package imported.
IMPORT_ALL = """
import importlib, pkgutil, sys
sys.modules["django"] = None  # any "import django..." now raises ImportError
import warden_agent
walk = pkgutil.walk_packages(warden_agent.__path__, "warden_agent.")
names = [m.name for m in walk if not m.name.endswith(".__main__")]  # those would run
for name in names:
    importlib.import_module(name)
for extra in sys.argv[1:]:
    importlib.import_module(extra)
loaded = [m for m, module in sys.modules.items() if m.split(".")[0] == "django" and module]
print(len(names), sorted(loaded))
"""


def imports_without_django(*extra: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL, *extra],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin"},  # no DJANGO_SETTINGS_MODULE either
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_every_module_of_the_agent_package_imports_without_django():
    count, loaded = imports_without_django().split(" ", 1)
    assert int(count) >= 9  # argv, client, metrics, executor, spool, config, agent, cli, ...
    assert loaded == "[]"


def test_the_simulated_fleet_imports_without_django():
    assert imports_without_django("remediation.simulated_fleet").endswith("[]")
