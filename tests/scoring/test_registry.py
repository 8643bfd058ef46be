"""The approval gate: only an approved, intact model version serves, and changing it is audited."""

import hashlib
from pathlib import Path

import pytest
from django.utils import timezone

from governance.models import AuditEvent
from scoring import registry
from scoring.actions import approve_model_version, retire_model_version
from scoring.models import MetricSample, ModelVersion
from scoring.registry import (
    ModelIntegrityError,
    NoApprovedModel,
    forget_serving_model,
    register_training_result,
    serving_model,
)

CHANGELIST = "/admin/scoring/modelversion/"


@pytest.fixture
def model_dir(db, settings, tmp_path) -> Path:
    settings.MODEL_DIR = tmp_path / "models"
    settings.WARDEN_MODEL_REFRESH_SECONDS = 0
    forget_serving_model()
    yield settings.MODEL_DIR
    forget_serving_model()


@pytest.fixture
def register(model_dir, trained_model):
    """Register the session's trained model as a new candidate version."""

    def register() -> ModelVersion:
        return register_training_result(trained_model, actor="system:test")

    return register


def audited(action: str, version: ModelVersion) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action, object_id=str(version.pk)))


def test_a_registered_version_records_its_files_hash(register, model_dir):
    version = register()

    assert version.status == "candidate"
    data = (model_dir / version.artifact).read_bytes()
    assert hashlib.sha256(data).hexdigest() == version.sha256
    [registered] = audited("model.registered", version)
    assert registered.data["sha256"] == version.sha256


def test_a_candidate_does_not_serve_until_approved(register, alice):
    # given a freshly registered version
    version = register()

    # then nothing classifies with it
    with pytest.raises(NoApprovedModel):
        serving_model()

    # when a supervisor approves it, it serves
    approve_model_version(version, actor=alice, now=timezone.now(), reason="looks good")
    assert serving_model().version == version.version
    [approved] = audited("model.approved", version)
    assert approved.actor == "user:alice"
    assert approved.data == {"sha256": version.sha256, "note": "looks good"}


def test_approving_a_version_retires_the_one_serving(register, alice):
    # given v1 serving
    v1, v2 = register(), register()
    approve_model_version(v1, actor=alice, now=timezone.now(), reason="better")

    # when v2 is approved
    approve_model_version(v2, actor=alice, now=timezone.now(), reason="better")

    # then v1 is retired, v2 serves, and both changes are audited
    v1.refresh_from_db()
    v2.refresh_from_db()
    assert (v1.status, v2.status) == ("retired", "approved")
    assert v2.approved_by == alice
    assert ModelVersion.objects.filter(status="approved").count() == 1
    assert [e.actor for e in audited("model.retired", v1)] == ["user:alice"]
    assert serving_model().version == v2.version


def test_retiring_the_serving_version_stops_classification(agent, alice, approved_model):
    # when a supervisor retires the only approved version
    retire_model_version(approved_model, actor=alice, now=timezone.now(), reason="drifted")

    # then agents are told the service is unavailable, and nothing is stored
    response = agent.post_metrics(agent.sample("disk"))
    assert response.status_code == 503
    assert "no severity model is approved" in response.content.decode()
    assert not MetricSample.objects.exists()
    [retired] = audited("model.retired", approved_model)
    assert (retired.actor, retired.data["note"]) == ("user:alice", "drifted")


def test_every_process_picks_up_a_new_approval_after_the_refresh_interval(
    register, alice, settings, monkeypatch
):
    # given a process serving v1 that checks for a new approval every 60 seconds
    settings.WARDEN_MODEL_REFRESH_SECONDS = 60
    clock = [1000.0]
    monkeypatch.setattr(registry._cache, "clock", lambda: clock[0])
    v1, v2 = register(), register()
    approve_model_version(v1, actor=alice, now=timezone.now(), reason="better")
    assert serving_model().version == v1.version

    # when v2 is approved (as by another process: this one's cache is not told)
    approve_model_version(v2, actor=alice, now=timezone.now(), reason="better")

    # then v1 serves until the interval has passed, and v2 after it, with no restart
    clock[0] += 59
    assert serving_model().version == v1.version
    clock[0] += 2
    assert serving_model().version == v2.version


def test_with_no_refresh_interval_a_new_approval_serves_at_once(register, alice):
    v1, v2 = register(), register()
    approve_model_version(v1, actor=alice, now=timezone.now(), reason="better")
    assert serving_model().version == v1.version

    approve_model_version(v2, actor=alice, now=timezone.now(), reason="better")

    assert serving_model().version == v2.version


def tamper(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_tampered_file_cannot_be_approved(register, model_dir, alice):
    # given a candidate whose file changed after registration
    version = register()
    tamper(model_dir / version.artifact)

    # when / then
    with pytest.raises(ModelIntegrityError, match="does not match its recorded sha256"):
        approve_model_version(version, actor=alice, now=timezone.now(), reason="better")
    version.refresh_from_db()
    assert version.status == "candidate"
    assert not audited("model.approved", version)


def test_a_serving_version_whose_file_is_tampered_with_is_refused(register, model_dir, alice):
    # given an approved version, its file then altered on disk
    version = register()
    approve_model_version(version, actor=alice, now=timezone.now(), reason="better")
    tamper(model_dir / version.artifact)

    # when a process (re)loads it, it refuses to classify with it
    forget_serving_model()
    with pytest.raises(ModelIntegrityError):
        serving_model()


def test_a_missing_file_is_refused(register, model_dir, alice):
    version = register()
    (model_dir / version.artifact).unlink()

    with pytest.raises(ModelIntegrityError, match="cannot be read"):
        approve_model_version(version, actor=alice, now=timezone.now(), reason="better")


# The admin: supervisors approve and retire; approvers and compliance only look.


def run_admin_action(client, action: str, version: ModelVersion, note: str = "passes the holdout"):
    """Choose the action on the list, then confirm it with a note, as a person would."""
    chosen = {"action": action, "_selected_action": [version.pk]}
    confirm_page = client.post(CHANGELIST, chosen)
    confirmed = client.post(CHANGELIST, {**chosen, "confirmed": "yes", "note": note})
    return confirm_page, confirmed


def test_a_supervisor_approves_a_version_in_the_admin(client, register, alice):
    version = register()
    client.force_login(alice)

    confirm_page, confirmed = run_admin_action(
        client, "approve_action", version, note="held-out recall fine"
    )

    assert "You are about to <strong>approve</strong>" in confirm_page.content.decode()
    assert confirmed.status_code == 302
    version.refresh_from_db()
    assert (version.status, version.approved_by) == ("approved", alice)
    [approved] = audited("model.approved", version)
    assert (approved.actor, approved.data["note"]) == ("user:alice", "held-out recall fine")
    page = client.get(CHANGELIST).content.decode()
    assert f"Model v{version.version} approved" in page


def test_a_supervisor_retires_a_version_in_the_admin(client, register, alice):
    version = register()
    approve_model_version(version, actor=alice, now=timezone.now(), reason="better")
    client.force_login(alice)

    run_admin_action(client, "retire_action", version, note="out of its depth")

    version.refresh_from_db()
    assert version.status == "retired"
    [retired] = audited("model.retired", version)
    assert (retired.actor, retired.data["note"]) == ("user:alice", "out of its depth")
    with pytest.raises(NoApprovedModel):
        serving_model()


@pytest.mark.parametrize(
    ("persona", "may_change"), [("alice", True), ("bob", False), ("dave", False)]
)
def test_only_supervisors_may_approve_or_retire_in_the_admin(
    request, client, register, persona, may_change
):
    # given a candidate, seen by each persona
    version = register()
    user = request.getfixturevalue(persona)
    client.force_login(user)
    listing = client.get(CHANGELIST)
    assert listing.status_code == 200
    assert ("Approve to serve" in listing.content.decode()) is may_change

    # when they try the approve action anyway
    run_admin_action(client, "approve_action", version)

    # then only a supervisor's goes through
    version.refresh_from_db()
    assert (version.status == "approved") is may_change
    assert bool(audited("model.approved", version)) is may_change
