"""Loading a model file trusts only the exact types Warden's training produces.

Each crafted artifact below carries a matching recorded sha256, so only the type
check stands between it and the process that loads it.
"""

import hashlib
import io
import json
import zipfile
from collections import Counter
from pathlib import Path

import pytest
import skops.io
from django.utils import timezone
from sklearn.utils import Bunch

from scoring.actions import approve_model_version
from scoring.models import ModelVersion
from scoring.registry import (
    TRUSTED_TYPES,
    ModelIntegrityError,
    forget_serving_model,
    load_estimator,
)


class Intruder:
    """A type no Warden artifact holds; counts its instances to prove none was made."""

    created = 0

    def __new__(cls, *args, **kwargs):
        cls.created += 1
        return super().__new__(cls)

    def __init__(self, code: str = "") -> None:
        self.code = code

    def __reduce__(self):
        # Saved by skops as a constructor call, which the payload below rewrites.
        return (Intruder, (self.code,))


@pytest.fixture
def model_dir(db, settings, tmp_path) -> Path:
    settings.MODEL_DIR = tmp_path / "models"
    settings.MODEL_DIR.mkdir()
    forget_serving_model()
    yield settings.MODEL_DIR
    forget_serving_model()


def write(model_dir: Path, name: str, data: bytes) -> ModelVersion:
    """A candidate version whose recorded sha256 matches the (crafted) file."""
    (model_dir / name).write_bytes(data)
    return ModelVersion.objects.create(
        version=ModelVersion.objects.count() + 1,
        algorithm="HistGradientBoostingClassifier",
        artifact=name,
        sha256=hashlib.sha256(data).hexdigest(),
    )


def calling(module: str, function: str, argument: str) -> bytes:
    """A skops file whose schema calls module.function(argument) while it loads."""
    source = io.BytesIO(skops.io.dumps(Intruder(argument)))
    target = io.BytesIO()
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for item in zin.infolist():
            content = zin.read(item)
            if item.filename == "schema.json":
                schema = json.loads(content)
                schema.update(__module__=module, __class__=function)
                content = json.dumps(schema).encode()
            zout.writestr(item, content)
    return target.getvalue()


def test_a_schema_calling_builtins_eval_is_refused_without_running(model_dir, tmp_path):
    marker = tmp_path / "pwned"
    data = calling("builtins", "eval", f"__import__('pathlib').Path({str(marker)!r}).touch()")
    version = write(model_dir, "severity-v1-evil.skops", data)

    with pytest.raises(ModelIntegrityError, match=r"untrusted types, refused: builtins\.eval"):
        load_estimator(version.artifact, version.sha256)
    with pytest.raises(ModelIntegrityError, match=r"builtins\.eval"):
        approve_model_version(version, actor=None, now=timezone.now(), reason="")

    assert not marker.exists()
    version.refresh_from_db()
    assert version.status == "candidate"


def test_a_custom_class_is_refused_without_being_instantiated(model_dir):
    Intruder.created = 0
    data = skops.io.dumps({"model": Intruder("x")})
    Intruder.created = 0
    version = write(model_dir, "severity-v1-odd.skops", data)

    with pytest.raises(ModelIntegrityError, match=f"{__name__}.Intruder"):
        load_estimator(version.artifact, version.sha256)

    assert Intruder.created == 0


@pytest.mark.parametrize(
    ("obj", "type_name"),
    [(Bunch(a=1), "sklearn.utils._bunch.Bunch"), (Counter(a=1), "collections.Counter")],
)
def test_a_type_outside_the_allow_list_is_refused_whatever_its_package(model_dir, obj, type_name):
    data = skops.io.dumps(obj)
    version = write(model_dir, "severity-v1-odd.skops", data)

    with pytest.raises(ModelIntegrityError, match=type_name):
        load_estimator(version.artifact, version.sha256)


def test_the_trained_model_holds_only_allow_listed_types(model_dir, trained_model):
    data = skops.io.dumps(trained_model.estimator)
    version = write(model_dir, "severity-v1-real.skops", data)

    assert set(skops.io.get_untrusted_types(data=data)) <= TRUSTED_TYPES
    estimator = load_estimator(version.artifact, version.sha256)
    assert type(estimator) is type(trained_model.estimator)
