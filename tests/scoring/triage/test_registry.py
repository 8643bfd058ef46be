"""The triage model's approval gate: only an approved, intact version serves; a new one is
compared with the serving one first; every change is audited."""

import hashlib
from collections import Counter

import pytest
import skops.io
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.utils import timezone

from governance.models import AuditEvent
from governance.rules.labels import event_label
from scoring.models import TriageModelVersion
from scoring.registry import ModelIntegrityError
from scoring.triage import registry
from scoring.triage.actions import (
    NotCompared,
    approve_triage_model_version,
    retire_triage_model_version,
)
from scoring.triage.candidates import compare_with_serving
from scoring.triage.registry import (
    NoApprovedTriageModel,
    forget_serving_triage_model,
    load_pipeline,
    register_triage_result,
    serving_triage_model,
)


@pytest.fixture
def model_dir(db, settings, tmp_path):
    settings.MODEL_DIR = tmp_path / "models"
    settings.WARDEN_MODEL_REFRESH_SECONDS = 0
    forget_serving_triage_model()
    yield settings.MODEL_DIR
    forget_serving_triage_model()


@pytest.fixture
def register(model_dir, trained_triage_model):
    def register() -> TriageModelVersion:
        return register_triage_result(trained_triage_model, actor="system:test")

    return register


def audited(action: str, version: TriageModelVersion) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action, object_id=str(version.pk)))


def test_a_registered_version_records_its_files_hash_and_rule(register, model_dir):
    version = register()

    assert version.status == "candidate"
    assert version.artifact.startswith("triage-v1-")
    data = (model_dir / version.artifact).read_bytes()
    assert hashlib.sha256(data).hexdigest() == version.sha256
    assert version.thresholds["threshold"] == 0.75
    assert version.metrics["unsafe_suggestions"] == 0
    [registered] = audited("triage_model.registered", version)
    assert registered.data["sha256"] == version.sha256
    assert event_label("triage_model.registered") == "Triage model version registered"


def test_a_candidate_serves_only_once_a_supervisor_approves_it(register, alice):
    version = register()
    with pytest.raises(NoApprovedTriageModel):
        serving_triage_model()

    approve_triage_model_version(version, actor=alice, now=timezone.now(), reason="first one")

    assert serving_triage_model().version == version.version
    [approved] = audited("triage_model.approved", version)
    assert approved.actor == "user:alice"
    assert approved.data["note"] == "first one"


def test_an_approver_may_not_choose_the_model(register, bob):
    version = register()

    with pytest.raises(PermissionDenied):
        approve_triage_model_version(version, actor=bob, now=timezone.now(), reason="mine")
    version.refresh_from_db()
    assert version.status == "candidate"


def test_a_tampered_artifact_is_refused_and_nothing_changes(register, model_dir, alice):
    version = register()
    path = model_dir / version.artifact
    path.write_bytes(path.read_bytes() + b"\0")

    with pytest.raises(ModelIntegrityError, match="does not match its recorded sha256"):
        approve_triage_model_version(version, actor=alice, now=timezone.now(), reason="x")

    version.refresh_from_db()
    assert version.status == "candidate"
    assert not audited("triage_model.approved", version)


def test_a_file_holding_an_untrusted_type_is_refused(register, model_dir):
    version = register()
    data = skops.io.dumps(Counter(a=1))
    (model_dir / version.artifact).write_bytes(data)
    TriageModelVersion.objects.filter(pk=version.pk).update(sha256=hashlib.sha256(data).hexdigest())
    version.refresh_from_db()

    with pytest.raises(ModelIntegrityError, match=r"collections\.Counter"):
        load_pipeline(version)


def test_the_trained_pipeline_holds_exactly_the_allow_listed_types(trained_triage_model):
    data = skops.io.dumps(trained_triage_model.pipeline)

    assert set(skops.io.get_untrusted_types(data=data)) == registry.TRUSTED_TYPES


def test_a_new_version_is_approved_only_after_its_comparison_and_retires_the_old(register, alice):
    v1, v2 = register(), register()
    approve_triage_model_version(v1, actor=alice, now=timezone.now(), reason="first")

    with pytest.raises(NotCompared, match="not compared with the serving v1"):
        approve_triage_model_version(v2, actor=alice, now=timezone.now(), reason="newer")
    assert serving_triage_model().version == 1

    compare_with_serving(v2, now=timezone.now())
    approve_triage_model_version(v2, actor=alice, now=timezone.now(), reason="newer")

    v1.refresh_from_db()
    assert (v1.status, serving_triage_model().version) == ("retired", 2)
    [retired] = audited("triage_model.retired", v1)
    assert "v2 approved" in retired.summary


def test_the_database_holds_one_approved_version_at_most(register):
    v1, v2 = register(), register()
    TriageModelVersion.objects.filter(pk=v1.pk).update(status="approved")

    with pytest.raises(IntegrityError), transaction.atomic():
        TriageModelVersion.objects.filter(pk=v2.pk).update(status="approved")


def test_retiring_the_serving_version_stops_triage(register, alice):
    version = register()
    approve_triage_model_version(version, actor=alice, now=timezone.now(), reason="on")

    retire_triage_model_version(version, actor=alice, now=timezone.now(), reason="off")

    with pytest.raises(NoApprovedTriageModel):
        serving_triage_model()
    assert audited("triage_model.retired", version)[0].data == {"note": "off"}


def test_every_process_picks_up_an_approval_within_the_refresh_interval(
    register, alice, settings, monkeypatch
):
    settings.WARDEN_MODEL_REFRESH_SECONDS = 30
    clock = [1000.0]
    monkeypatch.setattr(registry._cache, "clock", lambda: clock[0])
    v1, v2 = register(), register()
    approve_triage_model_version(v1, actor=alice, now=timezone.now(), reason="first")
    assert serving_triage_model().version == 1

    compare_with_serving(v2, now=timezone.now())
    approve_triage_model_version(v2, actor=alice, now=timezone.now(), reason="second")

    clock[0] += 29
    assert serving_triage_model().version == 1  # cached: not asked yet
    clock[0] += 2
    assert serving_triage_model().version == 2
