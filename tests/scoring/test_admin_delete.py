"""A model version cannot be deleted in the admin, not even by a superuser: it is retired."""

from django.contrib.auth.models import User

from scoring.models import ModelVersion


def test_a_model_version_cannot_be_deleted_in_the_admin(client, db):
    version = ModelVersion.objects.create(
        version=1, algorithm="HistGradientBoostingClassifier", artifact="v1.skops", sha256="0" * 64
    )
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))

    page = client.get(f"/admin/scoring/modelversion/{version.pk}/delete/")
    posted = client.post(f"/admin/scoring/modelversion/{version.pk}/delete/", {"post": "yes"})
    bulk = client.post(
        "/admin/scoring/modelversion/",
        {"action": "delete_selected", "_selected_action": [version.pk], "post": "yes"},
    )
    listing = client.get("/admin/scoring/modelversion/").content.decode()

    assert (page.status_code, posted.status_code) == (403, 403)
    assert bulk.status_code in {200, 302}
    assert ModelVersion.objects.filter(pk=version.pk).exists()
    assert "delete_selected" not in listing
