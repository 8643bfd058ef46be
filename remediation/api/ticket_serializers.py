"""The ticket API's bodies (remediation.api.tickets): what it reads and answers.

A ticket with its decisions and executions (and, read one at a time, the seed's fields:
what Warden suggests, how sure it is, what it decided and what ran), an integrator's
ticket, an approval or rejection and its result, and a ticket's remediation logs.
"""

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from feedback.api.serializers import ReliabilitySerializer, reliability_json
from governance.decisions.stats import current_reliability
from governance.models import AuditEvent, Decision
from governance.rules.labels import event_label
from remediation.choices import Category, ExecutionState, Priority
from remediation.models import Execution, Runbook, Ticket
from scoring.reliability import ReliabilityBreakdown

# An execution that ran to an end: its outcome is the remediation's result.
SUCCEEDED = {ExecutionState.SUCCEEDED}


FAILED = {ExecutionState.FAILED, ExecutionState.ROLLED_BACK, ExecutionState.ROLLBACK_FAILED}


# --- Reading --------------------------------------------------------------------------------------


class DecisionSerializer(serializers.ModelSerializer):
    # null when the decision named none (an escalation has no runbook)
    policy = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)
    runbook = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)

    class Meta:
        model = Decision
        fields = [
            "id",
            "outcome",
            "model_outcome",
            "confidence",
            "allowed",
            "requires_approval",
            "required_approvals",
            "action_type",
            "risk_level",
            "shadow",
            "reasons",
            "safety_checks",
            "reliability",
            "explanation",
            "policy",
            "policy_version",
            "runbook",
            "argv",
            "argv_digest",
            "created_at",
        ]


class ExecutionSerializer(serializers.ModelSerializer):
    runbook = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = Execution
        fields = [
            "id",
            "runbook",
            "state",
            "argv",
            "argv_digest",
            "exit_code",
            "created_at",
            "started_at",
            "finished_at",
            "output",
        ]


class TicketSerializer(serializers.ModelSerializer):
    host = serializers.SlugRelatedField(
        slug_field="name",
        read_only=True,
        allow_null=True,
        help_text="null while no registered host is named (the ticket waits for a person)",
    )
    opened_by = serializers.SlugRelatedField(
        slug_field="username",
        read_only=True,
        allow_null=True,
        help_text="who opened it (a person or an integrator); null: metrics, an alert, Warden",
    )
    decisions = DecisionSerializer(many=True, read_only=True)
    executions = ExecutionSerializer(many=True, read_only=True)

    class Meta:
        model = Ticket
        fields = [
            "ticket_id",
            "title",
            "host",
            "category",
            "status",
            "severity",
            "confidence",
            "occurrence_count",
            "opened_at",
            "opened_by",
            "last_seen_at",
            "resolved_at",
            "resolution",
            "decisions",
            "executions",
        ]


class SuggestedActionSerializer(serializers.Serializer):
    action = serializers.CharField(help_text="the runbook's title")
    runbook = serializers.CharField()
    system = serializers.CharField(help_text="the host it would run on")
    action_type = serializers.CharField()
    commands = serializers.ListField(child=serializers.CharField())
    argv = serializers.ListField(
        child=serializers.CharField(), help_text="exactly what would run, program first"
    )
    argv_digest = serializers.CharField(allow_blank=True)
    allowed = serializers.BooleanField(help_text="whether the rules let it run at all")
    confidence = serializers.FloatField(
        allow_null=True,
        help_text="the text triage's confidence in this runbook (else the decision's model "
        "confidence); null when neither said",
    )


class SimilarIncidentSerializer(serializers.Serializer):
    ticket_id = serializers.CharField()
    similarity = serializers.FloatField(help_text="cosine similarity of the texts, 0 to 1")
    link = serializers.CharField(help_text="the incident in this API")


class TriageSerializer(serializers.Serializer):
    model = serializers.CharField(help_text='the triage model version, or "no model"')
    category = serializers.CharField(required=False)
    category_confidence = serializers.FloatField(required=False)
    runbook = serializers.CharField(required=False, help_text='"" when unsure: a person picks')
    runbook_confidence = serializers.FloatField(required=False)
    alternatives = serializers.ListField(child=serializers.ListField(), required=False)
    unsure = serializers.BooleanField(required=False)
    inferred_host = serializers.CharField(allow_null=True)
    category_from = serializers.CharField(
        help_text='"caller", "triage" (read from the text) or "" (a person picks it)'
    )


class RemediationDecisionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    outcome = serializers.CharField(help_text="NO_ACTION, AUTO_HEAL or HITL_REQUIRED")
    allowed = serializers.BooleanField()
    requires_approval = serializers.BooleanField()
    required_approvals = serializers.IntegerField()
    action_type = serializers.CharField()
    risk_level = serializers.CharField()
    shadow = serializers.BooleanField()
    policy = serializers.CharField(allow_null=True)
    reasoning = serializers.ListField(child=serializers.CharField())
    safety_checks = serializers.DictField(child=serializers.BooleanField())
    reliability = serializers.DictField(help_text="the reliability the decision was made on")
    decided_at = serializers.DateTimeField()


class ExecutedActionSerializer(serializers.Serializer):
    execution_id = serializers.IntegerField()
    runbook = serializers.CharField()
    action = serializers.CharField()
    state = serializers.CharField()
    automatic = serializers.BooleanField(help_text="queued by the decision, not by approvers")
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    output = serializers.CharField(allow_blank=True)


class RemediationResultsSerializer(serializers.Serializer):
    success = serializers.BooleanField(
        allow_null=True, help_text="the latest execution's outcome; null while unfinished"
    )
    state = serializers.CharField(help_text="the latest execution's state")
    executed_actions = ExecutedActionSerializer(many=True)


class TicketDetailSerializer(TicketSerializer):
    """A ticket with the seed's fields: what Warden suggests, how sure it is, what it decided
    and what ran. `reliability_score` is as of now (feedback moves it at once); the
    decision's own is in `remediation_decision.reliability`."""

    auto_remediation_enabled = serializers.BooleanField(source="enable_auto_remediation")
    confidence_score = serializers.FloatField(source="confidence")
    reliability_score = serializers.SerializerMethodField()
    reliability_breakdown = serializers.SerializerMethodField()
    suggested_actions = serializers.SerializerMethodField()
    auto_remediation_executed = serializers.SerializerMethodField()
    remediation_decision = serializers.SerializerMethodField()
    remediation_results = serializers.SerializerMethodField()
    triage = serializers.SerializerMethodField()
    triaged_at = serializers.DateTimeField(read_only=True, allow_null=True)
    similar_incidents = serializers.SerializerMethodField()

    class Meta(TicketSerializer.Meta):
        fields = [
            *TicketSerializer.Meta.fields,
            "description",
            "source",
            "priority",
            "affects_billing",
            "data_integrity",
            "customer_impact_minutes",
            "security_severity",
            "parameters",
            "auto_remediation_enabled",
            "confidence_score",
            "reliability_score",
            "reliability_breakdown",
            "suggested_actions",
            "auto_remediation_executed",
            "remediation_decision",
            "remediation_results",
            "triage",
            "triaged_at",
            "similar_incidents",
        ]

    def _reliability(self, ticket: Ticket) -> ReliabilityBreakdown | None:
        cache = self.context.setdefault("reliability", {})
        if ticket.pk not in cache:
            cache[ticket.pk] = current_reliability(ticket, timezone.now())
        return cache[ticket.pk]

    @staticmethod
    def _latest_decision(ticket: Ticket) -> Decision | None:
        return max(ticket.decisions.all(), key=lambda d: (d.created_at, d.pk), default=None)

    @staticmethod
    def _executions(ticket: Ticket) -> list[Execution]:
        return sorted(ticket.executions.all(), key=lambda e: (e.created_at, e.pk))

    @extend_schema_field(serializers.FloatField(allow_null=True))
    def get_reliability_score(self, ticket: Ticket) -> float | None:
        score = self._reliability(ticket)
        return score.overall_score if score else None

    @extend_schema_field(ReliabilitySerializer(allow_null=True))
    def get_reliability_breakdown(self, ticket: Ticket) -> dict | None:
        return reliability_json(self._reliability(ticket))

    @extend_schema_field(TriageSerializer(allow_null=True))
    def get_triage(self, ticket: Ticket) -> dict | None:
        triage = dict(ticket.triage)
        triage.pop("similar_incidents", None)  # listed, with links, in similar_incidents
        return triage or None

    @extend_schema_field(SimilarIncidentSerializer(many=True))
    def get_similar_incidents(self, ticket: Ticket) -> list[dict]:
        request = self.context.get("request")
        found = []
        for incident in ticket.triage.get("similar_incidents", []):
            link = f"/api/v1/tickets/{incident['ticket_id']}"
            found.append(
                {
                    "ticket_id": incident["ticket_id"],
                    "similarity": incident["similarity"],
                    "link": request.build_absolute_uri(link) if request else link,
                }
            )
        return found

    @extend_schema_field(SuggestedActionSerializer(many=True))
    def get_suggested_actions(self, ticket: Ticket) -> list[dict]:
        """The decided runbook, with exactly what would run; before a decision (or when
        none named a runbook), the text triage's suggestion, when it was sure of one."""
        decision = self._latest_decision(ticket)
        suggested = "" if ticket.triage.get("unsure") else ticket.triage.get("runbook", "")
        triage_confidence = ticket.triage.get("runbook_confidence")
        if decision is not None and decision.runbook is not None:
            same = decision.runbook.name == suggested
            return [
                {
                    "action": decision.runbook.title,
                    "runbook": decision.runbook.name,
                    "system": ticket.host_name,
                    "action_type": decision.action_type,
                    "commands": list(decision.commands),
                    "argv": list(decision.argv),
                    "argv_digest": decision.argv_digest,
                    "allowed": decision.allowed,
                    "confidence": triage_confidence if same else decision.confidence,
                }
            ]
        runbook = Runbook.objects.filter(name=suggested).first() if suggested else None
        if runbook is None:
            return []
        return [
            {
                "action": runbook.title,
                "runbook": runbook.name,
                "system": ticket.host_name,
                "action_type": runbook.action_type,
                "commands": [],
                "argv": [],
                "argv_digest": "",
                "allowed": False,  # not decided yet: the rules have not judged it
                "confidence": triage_confidence,
            }
        ]

    @extend_schema_field(serializers.BooleanField())
    def get_auto_remediation_executed(self, ticket: Ticket) -> bool:
        return any(e.started_at is not None for e in ticket.executions.all())

    @extend_schema_field(RemediationDecisionSerializer(allow_null=True))
    def get_remediation_decision(self, ticket: Ticket) -> dict | None:
        decision = self._latest_decision(ticket)
        if decision is None:
            return None
        return {
            "id": decision.pk,
            "outcome": decision.outcome,
            "allowed": decision.allowed,
            "requires_approval": decision.requires_approval,
            "required_approvals": decision.required_approvals,
            "action_type": decision.action_type,
            "risk_level": decision.risk_level,
            "shadow": decision.shadow,
            "policy": decision.policy.name if decision.policy else None,
            "reasoning": list(decision.reasons),
            "safety_checks": dict(decision.safety_checks),
            "reliability": dict(decision.reliability),
            "decided_at": decision.created_at,
        }

    @extend_schema_field(RemediationResultsSerializer(allow_null=True))
    def get_remediation_results(self, ticket: Ticket) -> dict | None:
        executions = self._executions(ticket)
        if not executions:
            return None
        latest = executions[-1]
        success = True if latest.state in SUCCEEDED else False if latest.state in FAILED else None
        return {
            "success": success,
            "state": latest.state,
            "executed_actions": [
                {
                    "execution_id": e.pk,
                    "runbook": e.runbook.name,
                    "action": e.action or e.runbook.action,
                    "state": e.state,
                    "automatic": e.approval_request_id is None,
                    "started_at": e.started_at,
                    "finished_at": e.finished_at,
                    "output": e.output,
                }
                for e in executions
            ],
        }


# --- Opening --------------------------------------------------------------------------------------


class OpenTicketSerializer(serializers.Serializer):
    """The seed's ticket body, with PHASE-65's escalation facts."""

    ticket_id = serializers.CharField(
        max_length=32, help_text="your system's id for it; the ticket is read back by it"
    )
    host = serializers.CharField(
        max_length=253,
        required=False,
        allow_blank=True,
        default="",
        help_text="a registered host's name; without it the triage infers the host from "
        "the text, or the ticket waits for a person to name it",
    )
    category = serializers.ChoiceField(
        choices=Category.choices,
        required=False,
        default="",
        help_text="without it the triage reads one from the text (else a person picks it)",
    )
    title = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    description = serializers.CharField(
        max_length=10_000, required=False, allow_blank=True, default=""
    )
    priority = serializers.ChoiceField(choices=Priority.choices, default=Priority.MEDIUM)
    enable_auto_remediation = serializers.BooleanField(
        default=False,
        help_text="off unless set: without it a person approves anything that would run",
    )
    affects_billing = serializers.BooleanField(default=False)
    data_integrity = serializers.BooleanField(default=False)
    customer_impact_minutes = serializers.FloatField(min_value=0, max_value=525_600, default=0.0)
    security_severity = serializers.ChoiceField(
        choices=["none", "low", "medium", "high", "critical"], default="none"
    )
    parameters = serializers.DictField(
        child=serializers.CharField(max_length=200),
        required=False,
        default=dict,
        help_text='values the category\'s runbook command takes, e.g. {"address": '
        '"203.0.113.7"} for block-address; each is checked by its type when decided',
    )


class OpenedTicketSerializer(serializers.Serializer):
    """The 202 answer: the seed's five fields first, in its order; then where to look."""

    ticket_id = serializers.CharField()
    status = serializers.CharField(help_text='"processing" until its text is triaged')
    auto_remediation_enabled = serializers.BooleanField()
    confidence_score = serializers.FloatField(help_text="0.0 until decided")
    reliability_score = serializers.FloatField(allow_null=True, help_text="null until decided")
    host = serializers.CharField(allow_null=True)
    opened_by = serializers.CharField(allow_null=True)
    links = serializers.DictField(child=serializers.CharField())


class NameHostSerializer(serializers.Serializer):
    host = serializers.CharField(max_length=253, help_text="a registered host's name")
    category = serializers.ChoiceField(
        choices=Category.choices,
        required=False,
        default="",
        help_text="needed when the ticket has none (its text told the triage none)",
    )
    reason = serializers.CharField(
        max_length=500, help_text="why this host: kept in the audit trail"
    )


# --- Approving ------------------------------------------------------------------------------------


class ApproveRemediationSerializer(serializers.Serializer):
    approve = serializers.BooleanField(help_text="true approves, false rejects (a veto)")
    comment = serializers.CharField(
        max_length=2000, required=False, allow_blank=True, default="", help_text="a rejection's why"
    )
    ticket_id = serializers.CharField(
        required=False, help_text="optional; when sent it must be the path's ticket"
    )
    approver = serializers.CharField(
        required=False,
        help_text="optional: the token's own user by username or email; any other name is "
        "refused (the approver is always the authenticated user)",
    )

    def validate(self, data: dict) -> dict:
        if not data["approve"] and not data["comment"].strip():
            raise serializers.ValidationError(
                {"comment": ["A rejection needs a comment saying why."]}
            )
        return data


class ApprovalResultSerializer(serializers.Serializer):
    ticket_id = serializers.CharField()
    approval_request = serializers.IntegerField()
    status = serializers.CharField(help_text="pending until enough approvers agree")
    approvals = serializers.IntegerField()
    required_approvals = serializers.IntegerField()
    approver = serializers.CharField()
    ticket_status = serializers.CharField()
    execution_id = serializers.IntegerField(
        allow_null=True, help_text="the execution the last approval queued"
    )


# --- Logs -----------------------------------------------------------------------------------------


class ExecutionLogSerializer(serializers.ModelSerializer):
    runbook = serializers.SlugRelatedField(slug_field="name", read_only=True)
    requested_by = serializers.SerializerMethodField()
    automatic = serializers.SerializerMethodField()

    class Meta:
        model = Execution
        fields = [
            "id",
            "runbook",
            "runbook_version",
            "action",
            "commands",
            "state",
            "automatic",
            "requested_by",
            "approval_request",
            "created_at",
            "started_at",
            "finished_at",
            "output",
            "verify_samples_seen",
            "rollback_action",
            "rollback_output",
            "cancel_reason",
        ]

    @extend_schema_field(serializers.CharField())
    def get_requested_by(self, execution: Execution) -> str:
        return execution.requested_by.get_username() if execution.requested_by else "system"

    @extend_schema_field(serializers.BooleanField())
    def get_automatic(self, execution: Execution) -> bool:
        return execution.approval_request_id is None


class AuditLogSerializer(serializers.ModelSerializer):
    at = serializers.DateTimeField(source="created_at")
    label = serializers.SerializerMethodField()

    class Meta:
        model = AuditEvent
        fields = ["sequence", "at", "actor", "action", "label", "summary", "data", "hash"]

    @extend_schema_field(serializers.CharField())
    def get_label(self, audit_event: AuditEvent) -> str:
        return event_label(audit_event.action)


class RemediationLogsSerializer(serializers.Serializer):
    ticket_id = serializers.CharField()
    executions = ExecutionLogSerializer(many=True)
    events = AuditLogSerializer(many=True, help_text="every audit event of the ticket, in order")
