"""Governance's rows: policies, pauses, decisions, approvals, the audit log, notices and
earned autonomy, one module each.

Every model is imported here so Django loads them all, and `from governance.models import X`
is the way the rest of the project names them.
"""

from governance.models.approvals import Approval, ApprovalRequest, ApprovalStatus, Verdict
from governance.models.audit import AuditChainHead, AuditCheckpoint, AuditEvent
from governance.models.autonomy import (
    AutonomyProposal,
    PatternAutonomy,
    ProposalChange,
    ProposalStatus,
)
from governance.models.decisions import Decision
from governance.models.notices import (
    DeliveryStatus,
    Notice,
    NoticeDelivery,
    NoticeKind,
    NoticeLinkUse,
)
from governance.models.pauses import Pause, PauseScope
from governance.models.policies import (
    AUTONOMY_LEVEL_REFUSED,
    WEEKDAYS,
    Policy,
    validate_autonomy_level,
)

__all__ = [
    "AUTONOMY_LEVEL_REFUSED",
    "WEEKDAYS",
    "Approval",
    "ApprovalRequest",
    "ApprovalStatus",
    "AuditChainHead",
    "AuditCheckpoint",
    "AuditEvent",
    "AutonomyProposal",
    "Decision",
    "DeliveryStatus",
    "Notice",
    "NoticeDelivery",
    "NoticeKind",
    "NoticeLinkUse",
    "PatternAutonomy",
    "Pause",
    "PauseScope",
    "Policy",
    "ProposalChange",
    "ProposalStatus",
    "Verdict",
    "validate_autonomy_level",
]
