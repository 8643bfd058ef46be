"""Management commands, run as an operator runs them: a bad argument is one readable line."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["simulate_policy", "disk-self-healing", "--days", "abc"], "invalid int value: 'abc'"),
        (["add_host"], "the following arguments are required: name"),
        (["train_severity_model", "--hosts", "many"], "invalid int value: 'many'"),
    ],
)
def test_a_bad_argument_exits_non_zero_with_one_line(argv, says, tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "WARDEN_DATA_DIR": str(tmp_path)},
        timeout=60,
    )

    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert says in line
