"""`manage.py screenshots` regenerates the README's pictures from a scratch Warden."""

import os
import re
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


def test_the_readme_shows_pictures_that_exist():
    readme = (ROOT / "README.md").read_text()
    pictures = re.findall(r"\((docs/screenshots/[^)]+\.png)\)", readme)
    assert pictures
    assert [p for p in pictures if not (ROOT / p).exists()] == []


@pytest.mark.early
def test_the_command_photographs_each_page_at_two_widths_light_and_dark(tmp_path):
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("screenshots need Debian's chromium")
        pytest.skip("screenshots need Debian's chromium")
    data = tmp_path / "data"  # the command must not touch the caller's data
    env = {**os.environ, "WARDEN_DATA_DIR": str(data)}
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "screenshots",
            "--out",
            str(tmp_path / "shots"),
            "--only",
            "console",
            "ticket-story",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    shots = tmp_path / "shots"
    for scheme in ("light", "dark"):
        assert png_size(shots / f"console-1280-{scheme}.png") == (1280, 900)
        assert png_size(shots / f"console-1920-{scheme}.png") == (1920, 900)
        # The story is taken whole at 1280 px: taller than one screen.
        width, height = png_size(shots / f"ticket-story-1280-{scheme}.png")
        assert width == 1280 and height > 900
    assert len(list(shots.glob("*.png"))) == 8
    assert not list(data.glob("*.sqlite3*")), "the caller's database was created or used"


def test_without_playwright_the_command_says_what_to_install(monkeypatch):
    import importlib.util

    from django.core.management import call_command
    from django.core.management.base import CommandError

    from remediation.management.commands import screenshots

    monkeypatch.setattr(screenshots, "CHROMIUM", sys.executable)  # a file that exists
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "playwright" else real_find_spec(name, *a),
    )
    with pytest.raises(CommandError, match="need playwright"):
        call_command("screenshots")
