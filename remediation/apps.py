from django.apps import AppConfig


class RemediationConfig(AppConfig):
    name = "remediation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from governance.audit.subscribers import subscribe
        from remediation.subscriptions import release_held_work

        subscribe(release_held_work)
