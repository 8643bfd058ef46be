"""The page a notice's approve or reject link opens: the request in full, then the verdict.

A link asks for a login first (to the admin's login page) and gives its verdict through
governance.approvals.actions as the person logged in, with their own permissions. A link that
was altered, has expired, was sent to someone else, was used already, or names a request
no longer pending changes nothing, and the page says which (with a 4xx status).
"""

from datetime import datetime
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from governance.approvals.actions import approve_request, reject_request
from governance.approvals.requests import (
    ApprovalError,
    approvals_counted,
    check_can_decide,
    stale_because,
)
from governance.models import ApprovalRequest, ApprovalStatus, NoticeKind, NoticeLinkUse, Verdict
from governance.notices.items import describe
from governance.notices.links import LinkRefused, VerdictLink, check_link_for, read_link

# The HTTP status of each refusal from governance.approvals.actions; any other code is 403.
REFUSAL_STATUS = {
    "not_pending": 409,
    "already_decided": 409,
    "voided": 409,
    "expired": 410,
    "note_required": 400,
}


class VerdictForm(forms.Form):
    note = forms.CharField(
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 70}),
    )

    def __init__(self, *args: Any, verdict: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if verdict == Verdict.REJECT:
            self.fields["note"].required = True
            self.fields["note"].error_messages["required"] = "A rejection needs a note saying why."
            self.fields["note"].help_text = "Required: say why, for the people who handle it next."
        else:
            self.fields["note"].help_text = "Optional: kept with your approval in the audit trail."


def linked_request(link: VerdictLink) -> ApprovalRequest:
    request = (
        ApprovalRequest.objects.select_related(
            "ticket__host", "runbook", "decision__policy", "decision__sample"
        )
        .filter(pk=link.request_id)
        .first()
    )
    if request is None:
        raise LinkRefused("gone", "The approval request this link is for does not exist.", 404)
    return request


def give_verdict(
    link: VerdictLink, request: ApprovalRequest, user: Any, note: str, now: datetime
) -> str:
    """Use `link` once for `user`: the verdict through governance.approvals.actions and the use
    recorded in one transaction. Returns what happened; raises LinkRefused if the link was
    used meanwhile (a second click) and ApprovalError if the verdict was refused, after
    recording the use (what the use case did, such as voiding a stale request, stands)."""
    refused: ApprovalError | None = None
    with transaction.atomic():
        try:
            with transaction.atomic():
                use = NoticeLinkUse.objects.create(
                    nonce=link.nonce,
                    user=user,
                    approval_request=request,
                    verdict=link.verdict,
                    used_at=now,
                )
        except IntegrityError:
            raise LinkRefused(
                "used", "This link was used a moment ago. Each link works once.", 410
            ) from None
        try:
            if link.verdict == Verdict.APPROVE:
                decided = approve_request(request, actor=user, reason=note, now=now)
                count = approvals_counted(decided)
                use.outcome = f"approved, {count} of {decided.required_approvals}" + (
                    "; the execution is queued"
                    if decided.status == ApprovalStatus.APPROVED
                    else "; more approvals needed"
                )
            else:
                reject_request(request, actor=user, reason=note, now=now)
                use.outcome = "rejected; the ticket went back to people"
        except ApprovalError as error:
            refused = error
            use.outcome = f"refused: {error.message}"[:500]
        use.save(update_fields=["outcome"])
    if refused is not None:
        raise refused
    return use.outcome


def sentence(text: str) -> str:
    return f"{text[:1].upper()}{text[1:].rstrip('.')}."


def unchanged(text: str) -> str:
    """governance.approvals.actions' reason as the page says it: nothing happened."""
    return f"{sentence(text)} Nothing was changed."


def refused_page(request: HttpRequest, message: str, status: int, **extra: Any) -> HttpResponse:
    context = {
        **admin.site.each_context(request),
        "title": "This link does nothing",
        "message": message,
        **extra,
    }
    return render(request, "notices/refused.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def notice_verdict(request: HttpRequest, token: str) -> HttpResponse:
    """GET: the request with everything needed to decide, and a form; POST: the verdict."""
    now = timezone.now()
    approval = None
    try:
        link = read_link(token)
        approval = linked_request(link)
        check_link_for(link, request.user)
        check_can_decide(approval, request.user, now)
    except LinkRefused as refused:
        return refused_page(request, refused.message, refused.status, approval=approval)
    except ApprovalError as refused:
        status = REFUSAL_STATUS.get(refused.code, 403)
        return refused_page(request, unchanged(refused.message), status, approval=approval)
    form = VerdictForm(request.POST if request.method == "POST" else None, verdict=link.verdict)
    done = ""
    if form.is_valid():
        try:
            done = give_verdict(link, approval, request.user, form.cleaned_data["note"], now)
        except LinkRefused as refused:
            return refused_page(request, refused.message, refused.status, approval=approval)
        except ApprovalError as refused:
            status = REFUSAL_STATUS.get(refused.code, 403)
            return refused_page(request, sentence(refused.message), status, approval=approval)
        approval.refresh_from_db()
    context = {
        **admin.site.each_context(request),
        "title": f"{Verdict(link.verdict).label} {approval.runbook.name} on "
        f"{approval.ticket.host.name}?",
        "verdict": link.verdict,
        "verdict_label": Verdict(link.verdict).label,
        "approval": approval,
        "item": describe(
            approval.ticket, kind=NoticeKind.APPROVAL_REQUESTED, request=approval, now=now
        ),
        "verdicts": approval.approvals.select_related("approver").order_by("created_at"),
        "stale": "" if done else stale_because(approval),
        "form": form,
        "done": done,
    }
    status = 400 if request.method == "POST" and not done else 200
    return render(request, "notices/verdict.html", context, status=status)
