"""Signed approve and reject links, and who may still use one.

An email's links are bound to its recipient (their user id is in the signed payload) and
work once. A Slack channel is shared, so its links carry no user: they work once per
person who follows them. Either way the page asks for a login first and the verdict goes
through governance.approvals.actions with that person's own permissions
(governance.notices.views), and a link expires after WARDEN_NOTICE_LINK_MAX_AGE_SECONDS or
with its request, whichever is sooner.
"""

import secrets
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core import signing
from django.urls import reverse
from django.utils import timezone

from governance.audit.errors import Refused
from governance.models import NoticeLinkUse, Verdict

LINK_SALT = "warden.notices.verdict-link"


def absolute(path: str) -> str:
    """`path` as a link people follow from a message: under WARDEN_NOTICE_BASE_URL."""
    return settings.WARDEN_NOTICE_BASE_URL + path


@dataclass(frozen=True)
class VerdictLink:
    """What an approve or reject link says: the request, the verdict, for whom (None:
    anyone who may approve, once each), and its nonce."""

    request_id: int
    verdict: str
    user_id: int | None
    nonce: str


class LinkRefused(Refused):
    """A link that does nothing; `message` says why, `status` is the page's HTTP status."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(code, message)
        self.status = status  # each link's refusal has its own (expired, used, forged)


def sign_link(request_id: int, verdict: str, user_id: int | None) -> str:
    """A signed, timestamped token for one verdict link (django.core.signing's
    TimestampSigner); a fresh nonce makes every link single-use on its own."""
    payload = {"r": request_id, "v": verdict, "u": user_id, "n": secrets.token_hex(16)}
    return signing.dumps(payload, salt=LINK_SALT, compress=True)


def link_url(request_id: int, verdict: str, user_id: int | None) -> str:
    return absolute(reverse("notice-verdict", args=[sign_link(request_id, verdict, user_id)]))


def read_link(token: str) -> VerdictLink:
    """The link `token` stands for; raises LinkRefused if it is altered or expired."""
    max_age = settings.WARDEN_NOTICE_LINK_MAX_AGE_SECONDS
    try:
        payload = signing.loads(token, salt=LINK_SALT, max_age=max_age)
    except signing.SignatureExpired:
        raise LinkRefused(
            "expired",
            f"This link has expired: a notice's links work for {max_age // 60} minutes. "
            "Nothing was changed; open the request in the admin or the console to decide.",
            410,
        ) from None
    except signing.BadSignature:
        raise LinkRefused(
            "bad_signature",
            "This link is not one Warden signed, or it was altered on the way (a character "
            "changed or cut off). Nothing was changed.",
            400,
        ) from None
    try:
        link = VerdictLink(int(payload["r"]), str(payload["v"]), payload["u"], str(payload["n"]))
    except (KeyError, TypeError, ValueError):
        raise LinkRefused("bad_signature", "This link is not a verdict link.", 400) from None
    if link.verdict not in Verdict.values:
        raise LinkRefused("bad_signature", "This link names no verdict.", 400)
    return link


def check_link_for(link: VerdictLink, user: Any) -> None:
    """Raise LinkRefused unless `user` may still use `link`: sent to them (or to a shared
    channel), and not used by them before."""
    if link.user_id is not None and link.user_id != user.pk:
        raise LinkRefused(
            "other_user",
            "This link was sent to another person: a link in an email works only for the "
            "person it was sent to. Nothing was changed; use the link in your own notice, "
            "or the admin.",
            403,
        )
    used = NoticeLinkUse.objects.filter(nonce=link.nonce, user=user).first()
    if used is not None:
        when = timezone.localtime(used.used_at)
        raise LinkRefused(
            "used",
            f"This link was already used, at {when:%Y-%m-%d %H:%M:%S %Z} "
            f"({used.outcome or used.get_verdict_display()}). Each link works once; nothing "
            "was changed.",
            410,
        )
