"""The seed's feedback, pattern and stats endpoints.

POST /api/v1/feedback                   people's verdict on a ticket (feedback.actions):
                                        201 for a giver's first on it, 200 when it
                                        replaces their earlier one
GET  /api/v1/patterns                   learned patterns (?category=&min_occurrences=)
GET  /api/v1/stats/reliability          reliability, resolution and feedback (?days=)
GET  /api/v1/stats/auto-remediation     automation, approvals and patterns (?days=)
"""

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, generics, permissions, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api_errors import error_responses
from feedback.actions import give_feedback
from feedback.analytics import Period, auto_remediation_stats, reliability_stats
from feedback.api.serializers import (
    AutoRemediationStatsSerializer,
    FeedbackResultSerializer,
    GiveFeedbackSerializer,
    PatternSerializer,
    ReliabilityStatsSerializer,
    StoredFeedbackSerializer,
    reliability_json,
)
from feedback.models import Feedback, Pattern
from governance.decisions.stats import current_reliability
from remediation.choices import Category
from remediation.models import Ticket

ERRORS = error_responses(400, 401, 403)
DEFAULT_DAYS = 30
MAX_DAYS = 3650


class Holds(permissions.BasePermission):
    """An active user holding every permission the view names in `required_permissions`."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated and getattr(user, "is_active", False)):
            return False
        return all(user.has_perm(p) for p in view.required_permissions)


def integer_param(request: Request, name: str, default: int, least: int, most: int) -> int:
    """The query parameter `name` as a whole number in [least, most]; 400 naming it if not."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise exceptions.ValidationError({name: [f"Give a whole number, not {raw!r}."]}) from None
    if not least <= value <= most:
        raise exceptions.ValidationError({name: [f"Give {least} to {most}, not {value}."]})
    return value


DAYS = OpenApiParameter(
    "days", int, description=f"the last this many days, 1 to {MAX_DAYS} (default {DEFAULT_DAYS})"
)


class FeedbackView(APIView):
    permission_classes = [Holds]
    required_permissions = ("feedback.add_feedback",)

    @extend_schema(
        request=GiveFeedbackSerializer,
        responses={
            201: FeedbackResultSerializer,
            200: FeedbackResultSerializer,
            **ERRORS,
        },
        summary="Give feedback on a ticket: its reliability and pattern move at once",
        description="One verdict per person (or service account) per ticket: a later one "
        "replaces the earlier (200, with the replaced verdict under `replaced`).",
    )
    def post(self, request: Request) -> Response:
        body = GiveFeedbackSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = dict(body.validated_data)
        ticket_id = data.pop("ticket_id")
        ticket = Ticket.objects.select_related("pattern").filter(ticket_id=ticket_id).first()
        if ticket is None:
            raise exceptions.ValidationError({"ticket_id": [f"No ticket {ticket_id}."]})
        data["time_to_resolve_minutes"] = data.pop("time_to_resolve", None)
        before = current_reliability(ticket, timezone.now())
        feedback = give_feedback(
            Feedback(ticket=ticket, **data), actor=request.user, reason="", now=timezone.now()
        )
        ticket.refresh_from_db()
        after = current_reliability(ticket, timezone.now())
        pattern = ticket.pattern
        replaced = feedback.replaces.first()
        return Response(
            {
                **StoredFeedbackSerializer(feedback).data,
                "replaced": StoredFeedbackSerializer(replaced).data if replaced else None,
                "reliability_score": after.overall_score if after else None,
                "reliability_score_before": before.overall_score if before else None,
                "reliability_breakdown": reliability_json(after),
                "pattern": PatternSerializer(pattern).data if pattern else None,
            },
            status=status.HTTP_200_OK if replaced else status.HTTP_201_CREATED,
        )


class PatternList(generics.ListAPIView):
    permission_classes = [Holds]
    required_permissions = ("feedback.view_pattern",)
    serializer_class = PatternSerializer
    filter_backends: list = []  # the two parameters below, validated

    @extend_schema(
        parameters=[
            OpenApiParameter("category", str, enum=Category.values, description="one category"),
            OpenApiParameter("min_occurrences", int, description="seen at least this often"),
        ],
        responses={200: PatternSerializer(many=True), **ERRORS},
        summary="Learned patterns, the most seen first",
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> Any:
        patterns = Pattern.objects.order_by("-occurrence_count", "pk")
        category = self.request.query_params.get("category")
        if category is not None:
            if category not in Category.values:
                raise exceptions.ValidationError(
                    {"category": [f"Unknown category {category!r} ({', '.join(Category.values)})."]}
                )
            patterns = patterns.filter(category=category)
        least = integer_param(self.request, "min_occurrences", 0, 0, 2**31 - 1)
        return patterns.filter(occurrence_count__gte=least) if least else patterns


class ReliabilityStats(APIView):
    permission_classes = [Holds]
    required_permissions = ("remediation.view_ticket",)

    @extend_schema(
        parameters=[DAYS],
        responses={200: ReliabilityStatsSerializer, **ERRORS},
        summary="Reliability, resolution and feedback over the last days",
    )
    def get(self, request: Request) -> Response:
        days = integer_param(request, "days", DEFAULT_DAYS, 1, MAX_DAYS)
        stats = reliability_stats(Period.last(days, timezone.now()))
        return Response(ReliabilityStatsSerializer(stats).data)


class AutoRemediationStats(APIView):
    permission_classes = [Holds]
    required_permissions = ("remediation.view_ticket",)

    @extend_schema(
        parameters=[DAYS],
        responses={200: AutoRemediationStatsSerializer, **ERRORS},
        summary="Automatic remediation, approvals and patterns over the last days",
    )
    def get(self, request: Request) -> Response:
        days = integer_param(request, "days", DEFAULT_DAYS, 1, MAX_DAYS)
        stats = auto_remediation_stats(Period.last(days, timezone.now()))
        return Response(AutoRemediationStatsSerializer(stats).data)
