from typing import Any

from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    name = "governance"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created
        from django.db.models.signals import post_migrate

        from config import checks  # noqa: F401  (registers the system checks)
        from governance.audit import signing  # noqa: F401  (the signing key's check)
        from governance.audit.subscribers import subscribe
        from governance.console.live import publish_events
        from governance.notices.plans import record_notices
        from governance.people import tracking

        connection_created.connect(register_audit_guard)
        # The audit log tells its subscribers of committed events: the live console
        # first, then the notices that decide who must be told.
        subscribe(publish_events)
        subscribe(record_notices)
        # Every change to people is audited, however it is made.
        tracking.connect()
        # A fresh install (or the upgrade that began state digests) records the state of
        # the rows its migrations made, so `verify_audit --state` holds from the start.
        post_migrate.connect(record_installed_state, sender=self)


def record_installed_state(sender: object, plan: Any = None, **kwargs: Any) -> None:
    """After `migrate` (which passes its plan), not after `flush` (which passes none)."""
    if plan is None:
        return
    from governance.audit.state_checks import record_installed_state as record
    from governance.policies.upgrades import record_migrated_versions

    record()
    # Then the policies a migration raised on an existing install, each in the log.
    record_migrated_versions()


def register_audit_guard(sender: object, connection: Any, **kwargs: Any) -> None:
    """SQLite's audit triggers ask this function whether the log may change (migration
    governance 0008): only inside governance.audit.log.audit_maintenance(). A SQL
    connection cannot flip it: only this process sets the state it reads."""
    if connection.vendor == "sqlite":
        from governance.audit.log import audit_maintenance_active

        connection.connection.create_function(
            "warden_audit_maintenance", 0, audit_maintenance_active
        )
