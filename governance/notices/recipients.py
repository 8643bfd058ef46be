"""Who is told: approvers of the requests they may decide, supervisors or reviewers of the
rest, and the fixed addresses of WARDEN_NOTICE_EMAILS of everything.

People are chosen by the permissions of governance.audit.permissions (directly, by a role,
or as superusers), so whoever may act on a notice is the one who hears of it.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Q

from governance.audit import permissions
from governance.models import ApprovalRequest, NoticeKind
from governance.notices.items import NoticeItem
from governance.notices.plans import REVIEW_KINDS


@dataclass(frozen=True)
class Recipient:
    """One address told of a delivery, and the user behind it if any."""

    address: str
    user_id: int | None  # None: an address from WARDEN_NOTICE_EMAILS (no personal links)
    name: str


def people_with(permission: str) -> list[Any]:
    """Active users with an email who hold `permission` (directly, by a role, or as
    superusers)."""
    app_label, codename = permission.split(".", 1)
    granted = Q(is_superuser=True)
    for via in ("user_permissions", "groups__permissions"):
        granted |= Q(**{f"{via}__codename": codename, f"{via}__content_type__app_label": app_label})
    users = get_user_model().objects.filter(granted, is_active=True).exclude(email="")
    return list(users.distinct().order_by("pk"))


def approvers_of(request: ApprovalRequest, candidates: Sequence[Any]) -> list[Any]:
    """Who of `candidates` may approve `request` (governance.approvals.actions.check_can_decide's
    rules that depend on the person: no service's user, not the request's asker or its
    ticket's opener, named by the policy if it names approvers)."""
    policy = request.decision.policy if request.decision_id and request.decision.policy else None
    named = set(policy.approvers) if policy is not None else set()
    own = {request.requested_by_id, request.ticket.opened_by_id}
    return [
        user
        for user in candidates
        if user.pk not in own
        and not permissions.is_service_account(user)
        and (not named or user.get_username() in named or user.email in named)
    ]


def recipients_of(
    kind: str, items: Sequence[NoticeItem], requests: dict[int, ApprovalRequest]
) -> list[tuple[Recipient, list[NoticeItem]]]:
    """Each recipient with the items they are told of: approvers with the requests they
    may decide, reviewers with actions to review, supervisors with everything else, and
    WARDEN_NOTICE_EMAILS with all."""
    told: dict[str, tuple[Recipient, list[NoticeItem]]] = {}
    if kind == NoticeKind.APPROVAL_REQUESTED:
        approvers = people_with(permissions.APPROVE)
        for item in items:
            request = requests.get(item.approval_request_id or 0)
            for user in approvers_of(request, approvers) if request else []:
                person = Recipient(user.email, user.pk, user.get_username())
                told.setdefault(user.email, (person, []))[1].append(item)
    else:
        # Actions to review go to those who may review them; escalations, L2 actions,
        # failures and rollbacks to those who may stop or roll back an execution.
        who = permissions.REVIEW if kind in REVIEW_KINDS.values() else permissions.SUPERVISE
        for user in people_with(who):
            told[user.email] = (Recipient(user.email, user.pk, user.get_username()), list(items))
    for address in settings.WARDEN_NOTICE_EMAILS:
        told.setdefault(address, (Recipient(address, None, address), list(items)))
    return list(told.values())
