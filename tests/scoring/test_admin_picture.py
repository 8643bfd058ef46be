"""The admin shows each version's confusion matrix, as a picture that cannot run script."""

import base64
import re

from scoring.models import ModelVersion


def test_the_change_page_shows_the_held_out_confusion_matrix(client, alice, approved_model):
    client.force_login(alice)

    page = client.get(f"/admin/scoring/modelversion/{approved_model.pk}/change/").content.decode()

    [encoded] = re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', page)
    svg = base64.b64decode(encoded).decode()
    assert svg.startswith("<svg")
    for row in approved_model.metrics["confusion_matrix"]:
        for count in row:
            assert f">{count}<" in svg


def test_a_tampered_picture_is_never_inline_markup(client, alice, approved_model):
    ModelVersion.objects.filter(pk=approved_model.pk).update(
        confusion_matrix_svg='<svg onload="alert(1)"></svg><script>alert(2)</script>'
    )
    client.force_login(alice)

    page = client.get(f"/admin/scoring/modelversion/{approved_model.pk}/change/").content.decode()

    assert "<script>alert(2)" not in page
    assert 'onload="alert(1)"' not in page
