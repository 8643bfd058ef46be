"""`manage.py screenshots` regenerates the README's pictures from a scratch Warden."""

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import CHROMIUM

ROOT = Path(__file__).resolve().parents[2]


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    return struct.unpack(">II", header[16:24])


def test_the_command_photographs_the_console_ticket_story_and_dashboard(tmp_path):
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("screenshots need Debian's chromium")
        pytest.skip("screenshots need Debian's chromium")
    data = tmp_path / "data"  # the command must not touch the caller's data
    env = {**os.environ, "WARDEN_DATA_DIR": str(data)}
    result = subprocess.run(
        [sys.executable, "manage.py", "screenshots", "--out", str(tmp_path / "shots")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for name in ("console.png", "console-dark.png", "ticket-story.png", "dashboard.png"):
        assert png_size(tmp_path / "shots" / name) == (1400, 1000)
    assert not list(data.glob("*.sqlite3*")), "the caller's database was created or used"
