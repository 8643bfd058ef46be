"""Alert receivers: monitoring systems open and count tickets (remediation.alerts).

POST /api/v1/alerts/alertmanager   Alertmanager's webhook (version 4 body)
POST /api/v1/alerts/webhook        any JSON, through WARDEN_ALERT_WEBHOOK_FIELDS

The caller is a service user with remediation.add_alert (the "alert senders" role:
`manage.py create_api_token alertmanager --service "alert senders"`), sending its token
as `Authorization: Token KEY` (Alertmanager's http_config.authorization). Each alert is
received on its own: the answer says what became of each, and an alert Warden cannot
place or read (a missing field, an impossible timestamp, too many or too long labels) is
named with the field to fix while the others are kept. Only when none can be kept is the
whole request refused (400), so Alertmanager does not send it again.
"""

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api_errors import error_responses
from feedback.api.views import Holds
from governance.audit import permissions
from governance.audit.errors import Refused
from remediation.alert_payloads import (
    FINGERPRINT_LENGTH,
    MAX_ALERTS,
    AlertMappingError,
    AlertReport,
    describe,
    dig,
    from_alertmanager,
    from_webhook,
    webhook_alerts,
)
from remediation.alerts import receive_alert
from remediation.models import AlertStatus

logger = logging.getLogger(__name__)
ERRORS = error_responses(400, 401, 403)
Parse = Callable[[], AlertReport]


class AlertmanagerAlertSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=AlertStatus.choices)
    labels = serializers.DictField(child=serializers.CharField(allow_blank=True))
    annotations = serializers.DictField(
        child=serializers.CharField(allow_blank=True), required=False, default=dict
    )
    startsAt = serializers.CharField(required=False, allow_blank=True)
    endsAt = serializers.CharField(required=False, allow_blank=True)
    generatorURL = serializers.CharField(required=False, allow_blank=True)
    fingerprint = serializers.CharField(max_length=FINGERPRINT_LENGTH)


class AlertmanagerEnvelopeSerializer(serializers.Serializer):
    """Alertmanager's webhook body (version 4) around its alerts, each checked on its own
    (AlertmanagerAlertSerializer) so one bad alert never refuses the others."""

    version = serializers.CharField(required=False)
    groupKey = serializers.CharField(required=False, allow_blank=True)
    truncatedAlerts = serializers.IntegerField(required=False, min_value=0)
    status = serializers.CharField(required=False, allow_blank=True)  # each alert's counts
    receiver = serializers.CharField(required=False, allow_blank=True)
    groupLabels = serializers.DictField(
        child=serializers.CharField(allow_blank=True), required=False
    )
    commonLabels = serializers.DictField(
        child=serializers.CharField(allow_blank=True), required=False, default=dict
    )
    commonAnnotations = serializers.DictField(
        child=serializers.CharField(allow_blank=True), required=False
    )
    externalURL = serializers.CharField(required=False, allow_blank=True)
    alerts = serializers.ListField(
        child=serializers.JSONField(), allow_empty=False, max_length=MAX_ALERTS
    )


class AlertmanagerWebhookSerializer(AlertmanagerEnvelopeSerializer):
    """Alertmanager's webhook body (version 4); the fields Warden reads are required."""

    alerts = serializers.ListField(
        child=AlertmanagerAlertSerializer(), allow_empty=False, max_length=MAX_ALERTS
    )


class AlertOutcomeSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="The alert's place in the request.")
    fingerprint = serializers.CharField(allow_null=True)
    outcome = serializers.ChoiceField(
        choices=["opened", "counted", "repeated", "resolved", "ignored", "rejected"]
    )
    ticket_id = serializers.CharField(allow_null=True)
    message = serializers.CharField()
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="For a rejected alert: the field path to fix and why.",
    )


class AlertsReceivedSerializer(serializers.Serializer):
    received = serializers.IntegerField(help_text="Alerts kept (not rejected).")
    alerts = AlertOutcomeSerializer(many=True)


class AlertReceiver(APIView):
    permission_classes = [Holds]
    required_permissions = (permissions.RECEIVE_ALERTS,)

    def receive(
        self, request: Request, parsed: list[tuple[int, str, Any, Parse]], now: datetime
    ) -> Response:
        """Receive each alert on its own; 200 if any was kept, else 400 naming the fields.

        `parsed`: each alert's place, its path in the body, its fingerprint as sent (for
        the answer), and how to read it. A rejected alert is not stored: it is answered
        and logged."""
        results: list[dict[str, Any]] = []
        for index, path, fingerprint, parse in parsed:
            sent = str(fingerprint) if isinstance(fingerprint, str | int) and fingerprint else None
            try:
                report = parse()
                outcome = receive_alert(report, user=request.user, now=now)
            except AlertMappingError as exc:
                results.append(_rejected(index, sent, exc.fields))
            except DjangoValidationError as exc:
                results.append(_rejected(index, sent, exc.message_dict))
            except Refused as exc:  # e.g. no free ticket id: this alert only
                results.append(_rejected(index, sent, exc.fields or {path: [exc.message]}))
            else:
                results.append(
                    {
                        "index": index,
                        "fingerprint": outcome.fingerprint,
                        "outcome": outcome.outcome,
                        "ticket_id": outcome.ticket_id,
                        "message": outcome.message,
                        "fields": {},
                    }
                )
        kept = sum(1 for r in results if r["outcome"] != "rejected")
        if not kept:
            fields: dict[str, list[str]] = {}
            for result in results:
                fields.update(result["fields"])
            raise exceptions.ValidationError(fields)
        return Response({"received": kept, "alerts": results})


def _rejected(index: int, fingerprint: str | None, fields: dict) -> dict[str, Any]:
    message = describe(fields)
    logger.warning(
        "alert %s (%s) rejected: %s", index, (fingerprint or "no fingerprint")[:200], message[:2000]
    )
    return {
        "index": index,
        "fingerprint": fingerprint,
        "outcome": "rejected",
        "ticket_id": None,
        "message": message,
        "fields": fields,
    }


class AlertmanagerView(AlertReceiver):
    @extend_schema(
        request=AlertmanagerWebhookSerializer,
        responses={200: AlertsReceivedSerializer, **ERRORS},
        summary="Alertmanager's webhook: open, count or resolve tickets from alerts",
        description=(
            "Point an Alertmanager webhook_config here with `http_config.authorization` "
            "(type Token) set to an alert sender's token. Hosts and categories come from "
            "labels (WARDEN_ALERT_HOST_LABELS, WARDEN_ALERT_CATEGORY_LABELS, "
            "WARDEN_ALERT_CATEGORIES); alerts are deduplicated by fingerprint; a resolved "
            "alert verifies the fix of its ticket."
        ),
    )
    def post(self, request: Request) -> Response:
        body = AlertmanagerEnvelopeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        common = body.validated_data.get("commonLabels", {})
        alerts = body.validated_data["alerts"]
        now = timezone.now()
        return self.receive(
            request,
            [
                (
                    i,
                    f"alerts[{i}]",
                    alert.get("fingerprint") if isinstance(alert, dict) else None,
                    lambda a=alert, p=f"alerts[{i}]": _alertmanager_report(a, common, p, now),
                )
                for i, alert in enumerate(alerts)
            ],
            now,
        )


def _alertmanager_report(
    alert: Any, common: dict[str, str], path: str, now: datetime
) -> AlertReport:
    """One alert of the body, checked on its own: field errors name it by `path`."""
    checked = AlertmanagerAlertSerializer(data=alert)
    if not checked.is_valid():
        raise AlertMappingError(_field_paths(checked.errors, path))
    return from_alertmanager(checked.validated_data, common, path, now)


def _field_paths(errors: Any, path: str) -> dict[str, list[str]]:
    """A serializer's nested errors as {"alerts[0].labels.team": [...]}."""
    if isinstance(errors, dict):
        flat: dict[str, list[str]] = {}
        for name, inner in errors.items():
            inner_path = path if name == "non_field_errors" else f"{path}.{name}"
            flat.update(_field_paths(inner, inner_path))
        return flat
    return {path: [str(message) for message in errors]}


class AlertWebhookView(AlertReceiver):
    @extend_schema(
        request=OpenApiTypes.OBJECT,
        responses={200: AlertsReceivedSerializer, **ERRORS},
        summary="Any monitoring system's JSON alerts, mapped by WARDEN_ALERT_WEBHOOK_FIELDS",
        description=(
            "The body is one alert, a list of them, or an object holding a list at the "
            "field map's `alerts` path. The map's dotted paths name each alert's "
            "fingerprint, status, host, category, name, title, description, priority and "
            "link; a status in WARDEN_ALERT_WEBHOOK_RESOLVED ends the alert."
        ),
    )
    def post(self, request: Request) -> Response:
        fields = settings.WARDEN_ALERT_WEBHOOK_FIELDS
        alerts = webhook_alerts(request.data, fields)
        if len(alerts) > MAX_ALERTS:
            raise exceptions.ValidationError(
                {fields.get("alerts") or "non_field": [f"At most {MAX_ALERTS} alerts a request."]}
            )
        resolved = [s.lower() for s in settings.WARDEN_ALERT_WEBHOOK_RESOLVED]
        return self.receive(
            request,
            [
                (
                    i,
                    path or "non_field",
                    dig(alert, fields.get("fingerprint", ""))
                    if fields.get("fingerprint")
                    else None,
                    lambda a=alert, p=path: from_webhook(a, fields, resolved, p),
                )
                for i, (path, alert) in enumerate(alerts)
            ],
            timezone.now(),
        )
