import sys

from csp.constants import SELF
from csp.decorators import csp_update
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect, JsonResponse
from django.templatetags.static import static
from django.urls import include, path
from django.views import defaults
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from config.api_errors import error_answer
from config.metrics import metrics
from feedback.api.views import AutoRemediationStats, FeedbackView, PatternList, ReliabilityStats
from governance.api.audit import (
    AuditEventList,
    AuditPublicKey,
    AuditPublicKeyPem,
    AuditVerifierScript,
)
from governance.api.views import ApprovalVerdictView
from governance.console.views import console, console_panels
from governance.notices.views import notice_verdict
from remediation.api.alerts import AlertmanagerView, AlertWebhookView
from remediation.api.executions import ExecutionCancelView
from remediation.api.handoff import ExecutionCallbackView
from remediation.api.long_poll import agent_actions
from remediation.api.tickets import TicketViewSet
from remediation.api.views import (
    AgentAllowlistView,
    AgentResultView,
    AgentStartView,
    MetricsView,
)
from remediation.views import evidence_page

router = DefaultRouter(trailing_slash=False)
router.register("tickets", TicketViewSet, basename="ticket")


# The API's docs: the split view serves its start-up script as a file (?script), so no inline
# script runs; Swagger UI draws its icons as data: images, admitted on this page only.
api_docs = csp_update({"img-src": [SELF, "data:"]})(
    SpectacularSwaggerSplitView.as_view(url_name="schema")
)


def favicon(request: HttpRequest) -> HttpResponsePermanentRedirect:
    """Browsers ask every site for /favicon.ico: Warden's icon, not a 404 in every log."""
    return HttpResponsePermanentRedirect(static("warden/favicon.svg"))


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """A path nothing answers: under /api/ in the API's one error shape (a client parses
    JSON, not a page), elsewhere Django's page."""
    if request.path.startswith("/api/"):
        message = f"Nothing at {request.path}: see /api/docs for the API's paths."
        error = {"code": "not_found", "message": message, "fields": {}}
        return JsonResponse({"error": error}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """An exception no view answered: under /api/ in the API's one error shape (a database
    that went away: 503 with Retry-After, so an agent keeps its samples and sends them
    again), elsewhere Django's page."""
    if request.path.startswith("/api/"):
        status, body, headers = error_answer(sys.exc_info()[1])
        return JsonResponse(body, status=status, headers=headers)
    return defaults.server_error(request)


handler404 = not_found
handler500 = server_error


api_v1 = [
    path("metrics", MetricsView.as_view(), name="metrics"),
    path("agent/actions", agent_actions, name="agent-actions"),
    path("agent/allowlist", AgentAllowlistView.as_view(), name="agent-allowlist"),
    path(
        "agent/actions/<int:execution_id>/started",
        AgentStartView.as_view(),
        name="agent-started",
    ),
    path(
        "agent/actions/<int:execution_id>/result",
        AgentResultView.as_view(),
        name="agent-result",
    ),
    path(
        "approvals/<int:pk>/approve",
        ApprovalVerdictView.as_view(verdict="approve"),
        name="approval-approve",
    ),
    path(
        "approvals/<int:pk>/reject",
        ApprovalVerdictView.as_view(verdict="reject"),
        name="approval-reject",
    ),
    path("alerts/alertmanager", AlertmanagerView.as_view(), name="alerts-alertmanager"),
    path("alerts/webhook", AlertWebhookView.as_view(), name="alerts-webhook"),
    path("audit-events", AuditEventList.as_view(), name="audit-events"),
    path("audit/public-key", AuditPublicKey.as_view(), name="audit-public-key"),
    path("audit/public-key.pem", AuditPublicKeyPem.as_view(), name="audit-public-key-pem"),
    path("audit/verifier.py", AuditVerifierScript.as_view(), name="audit-verifier"),
    path(
        "executions/<int:execution_id>/callback",
        ExecutionCallbackView.as_view(),
        name="execution-callback",
    ),
    path("executions/<int:pk>/cancel", ExecutionCancelView.as_view(), name="execution-cancel"),
    path("feedback", FeedbackView.as_view(), name="feedback"),
    path("patterns", PatternList.as_view(), name="patterns"),
    path("stats/reliability", ReliabilityStats.as_view(), name="stats-reliability"),
    path("stats/auto-remediation", AutoRemediationStats.as_view(), name="stats-auto-remediation"),
    path("", include(router.urls)),
]

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("healthz", healthz, name="healthz"),
    path("favicon.ico", favicon, name="favicon"),
    path("metrics", metrics, name="metrics"),
    # A new person's set-password link (governance.people.onboarding), Django's own
    # password-reset pages: the link works until the password is set.
    path(
        "password/set/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(),
        name="set-password",
    ),
    path(
        "password/set/done/",
        auth_views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
    path("admin/", admin.site.urls),
    path("console/", console, name="console"),
    path("console/panels", console_panels, name="console-panels"),
    path("console/", include("governance.console.urls")),
    path("tickets/<str:ticket_id>/evidence", evidence_page, name="ticket-evidence-page"),
    path("notices/<str:token>", notice_verdict, name="notice-verdict"),
    path("api/v1/", include(api_v1)),
    path("api/schema", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs", api_docs, name="api-docs"),
]
