"""The model version page reads as tables: the decision rule, metrics by class, parameters,
a confusion matrix with counts and row shares, and who approved the version and when."""

import re

from django.utils import timezone
from django.utils.html import escape

from scoring.actions import approve_model_version
from scoring.models import ModelVersion
from scoring.registry import register_training_result


def page_of(client, user, version) -> str:
    client.force_login(user)
    return client.get(f"/admin/scoring/modelversion/{version.pk}/change/").content.decode()


def test_the_confusion_matrix_is_a_table_of_counts_and_row_shares(client, alice, approved_model):
    page = page_of(client, alice, approved_model)

    matrix = approved_model.metrics["confusion_matrix"]
    for row in matrix:
        total = sum(row)
        for count in row:
            assert f"{count:,.0f} ({count / total:.1%})" in page
    assert "Rows: the true class; columns: the class the model picked" in page
    # Each class heads a row and a column by its words, with its code to search for.
    assert page.count(escape("Needs a person [HITL_REQUIRED]")) >= 2
    assert "data:image/svg+xml" not in page


def test_metrics_thresholds_and_parameters_are_tables_not_json(client, alice, approved_model):
    page = page_of(client, alice, approved_model)

    macro_f1 = approved_model.metrics["macro_f1"]
    assert f"<td>{macro_f1:.0%}</td>" in page
    assert "Precision" in page and "Recall" in page
    assert "Cost of each mistake" in page
    assert "learning rate" in page
    # No stored JSON shown as it is.
    assert escape('{"macro_f1"') not in page and '{"macro_f1"' not in page
    assert escape('"misclassification_cost"') not in page


def test_approved_by_names_who_approved_and_when(client, alice, trained_model, settings, tmp_path):
    settings.MODEL_DIR = tmp_path / "models"
    version = register_training_result(trained_model, actor="system:test")
    assert "not approved yet" in page_of(client, alice, version)

    approve_model_version(version, actor=alice, reason="held-out F1 is fine", now=timezone.now())

    page = page_of(client, alice, version)
    assert re.search(r"by alice at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", page)
    assert "Approved by:" not in page


def test_the_list_gives_scores_as_percentages(client, alice, approved_model):
    client.force_login(alice)

    page = client.get("/admin/scoring/modelversion/").content.decode()

    assert f"{approved_model.metrics['macro_f1']:.0%}" in page
    assert "Recall of needs a person" in page


def test_a_tampered_picture_is_never_inline_markup(client, alice, approved_model):
    ModelVersion.objects.filter(pk=approved_model.pk).update(
        confusion_matrix_svg='<svg onload="alert(1)"></svg><script>alert(2)</script>'
    )

    page = page_of(client, alice, approved_model)

    assert "<script>alert(2)" not in page
    assert 'onload="alert(1)"' not in page
