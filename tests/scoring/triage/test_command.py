"""`manage.py train_triage_model` as an operator runs it."""

import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from governance.models import AuditEvent
from scoring.models import TriageModelVersion
from scoring.triage.serving import triage_texts

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def model_dir(db, settings, tmp_path):
    settings.MODEL_DIR = tmp_path / "models"
    settings.WARDEN_MODEL_REFRESH_SECONDS = 0


def test_it_trains_registers_and_approves_a_version_that_serves(model_dir, make_ticket):
    make_ticket(
        "Website down on shop-1", "nginx 502", category="server", fixed_by="restart-web-service"
    )
    out = StringIO()

    call_command("train_triage_model", approve=True, cv_folds=2, stdout=out)

    [version] = TriageModelVersion.objects.all()
    assert version.status == "approved"
    assert version.metrics["unsafe_suggestions"] == 0
    assert version.params["history_tickets"] == 1
    assert "0 unsafe suggestions" in out.getvalue()
    assert "approved to serve" in out.getvalue()
    assert triage_texts(["disk full, /var 99%, old logs"])[0].category == "disk"
    assert AuditEvent.objects.filter(action="triage_model.approved").count() == 1


def test_a_second_approval_compares_with_the_serving_version_first(model_dir):
    call_command("train_triage_model", approve=True, cv_folds=0, stdout=StringIO())
    out = StringIO()

    call_command("train_triage_model", approve=True, cv_folds=0, seed=3, stdout=out)

    v1, v2 = TriageModelVersion.objects.order_by("version")
    assert (v1.status, v2.status) == ("retired", "approved")
    assert v2.comparison["serving_version"] == 1
    assert "Compared with v1" in out.getvalue()


def test_a_corpus_that_is_not_incidents_is_refused(model_dir, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"title": "x"}\n')

    with pytest.raises(CommandError, match="not JSON lines of incidents"):
        call_command("train_triage_model", corpus=bad, stdout=StringIO())
    assert not TriageModelVersion.objects.exists()


@pytest.mark.parametrize(
    ("argv", "says", "code"),
    [
        (["--corpus", "/nowhere/incidents.jsonl"], "cannot read the corpus", 1),
        (["--cv-folds", "1"], "--cv-folds must be 0 or at least 2", 1),
        (["--history-days", "soon"], "invalid int value: 'soon'", 2),
    ],
)
def test_bad_input_exits_non_zero_with_one_line(argv, says, code, tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "train_triage_model", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "WARDEN_DATA_DIR": str(tmp_path)},
        timeout=120,
    )

    assert result.returncode == code
    [line] = result.stderr.strip().splitlines()
    assert says in line
