"""What remediation does when the audit log tells of committed events.

Subscribed at startup (RemediationConfig.ready), so the governance rooms that write the
events need not know remediation: a pause that ended, resumed by a person or lapsed at
its end time, releases the work it held.
"""

from collections.abc import Sequence

from django_q.tasks import async_task

from governance.models import AuditEvent
from remediation.tasks import release_held_executions

PAUSE_ENDED = frozenset({"automation.resumed", "automation.pause_lapsed"})


def release_held_work(rows: Sequence[AuditEvent]) -> None:
    """Queue the release of held executions once per transaction in which a pause ended."""
    if any(row.action in PAUSE_ENDED for row in rows):
        async_task(release_held_executions)
