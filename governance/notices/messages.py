"""The messages: one email per recipient and one webhook payload per delivery.

subject_of and slack_message are pure: they turn NoticeItems into text and Slack blocks
within Slack's limits. email_for renders the notices/email.txt and notices/email.html
templates for one recipient, with approve and reject links signed for them.
"""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string

from governance.models import NoticeKind, Verdict
from governance.notices.items import NoticeItem
from governance.notices.links import absolute, link_url
from governance.notices.plans import REVIEW_KINDS
from governance.notices.recipients import Recipient
from remediation.choices import Category

DIGEST_LISTED = 25  # items a digest shows whole (Slack: lists); the rest one line each
TICKET_LIST = "/admin/remediation/ticket/"
REQUEST_LIST = "/admin/governance/approvalrequest/"
# Slack's limits: 3,000 characters a section, 50 blocks, 40,000 characters of text.
SLACK_SECTION_LIMIT = 2900
SLACK_TEXT_LIMIT = 39_000


def subject_of(
    kind: str, items: Sequence[NoticeItem], digest: bool, follow_up: bool = False
) -> str:
    """The email's subject (and the webhook's title): the one item, or the hosts of many
    with their categories (a storm's follow-up says so)."""
    label = NoticeKind(kind).label
    if not digest and len(items) == 1:
        item = items[0]
        what = f"{item.runbook} on {item.host}" if item.runbook else item.host
        return f"[Warden] {label}: {what} ({item.ticket_id})"
    hosts = sorted({item.host for item in items})
    named = ", ".join(hosts[:3]) + (f" and {len(hosts) - 3} more" if len(hosts) > 3 else "")
    categories = ", ".join(sorted({item.category for item in items}))
    more = " more" if follow_up else ""
    return (
        f"[Warden] {label} on {len(hosts):,}{more} host{'s' if len(hosts) > 1 else ''} "
        f"({categories}{', follow-up' if follow_up else ''}): {named}"
    )


@dataclass(frozen=True)
class StormSummary:
    """What a digest is about, before its items: how many tickets on how many hosts, of
    which categories, and where to see them all in Warden."""

    tickets: int
    hosts: int
    categories: tuple[tuple[str, int], ...]  # (label, tickets), the most first
    first_ticket: str
    last_ticket: str
    follow_up_of: datetime | None  # the digest this one follows, in a storm's tail
    links: tuple[tuple[str, str], ...]  # (what, url)

    @property
    def lines(self) -> tuple[str, ...]:
        categories = ", ".join(f"{label} ({n:,})" for label, n in self.categories)
        span = (
            self.first_ticket
            if self.first_ticket == self.last_ticket
            else f"{self.first_ticket} to {self.last_ticket}"
        )
        lines = [f"{self.tickets:,} tickets on {self.hosts:,} hosts; {categories}; {span}."]
        if self.follow_up_of is not None:
            lines.append(
                f"More of the storm told at {self.follow_up_of:%Y-%m-%d %H:%M:%S %Z}: "
                "these came after it."
            )
        if self.tickets > DIGEST_LISTED:
            lines.append(
                f"The first {DIGEST_LISTED} are shown whole, the rest one line each; "
                "all of them are in Warden."
            )
        return tuple(lines)


def storm_summary(
    kind: str, items: Sequence[NoticeItem], follow_up_of: datetime | None = None
) -> StormSummary:
    """The summary of a digest's `items` (pure), with links to the admin's lists of the
    tickets (and pending approval requests) of their categories."""
    by_category = Counter(item.category for item in items)
    tickets = sorted(item.ticket_id for item in items)
    codes = {str(label): code for code, label in Category.choices}
    links = []
    for label, _ in by_category.most_common():
        code = codes.get(label)
        if code is None:
            continue
        query = urlencode({"category__exact": code})
        links.append((f"{label} tickets", absolute(f"{TICKET_LIST}?{query}")))
        if kind == NoticeKind.APPROVAL_REQUESTED:
            query = urlencode({"status__exact": "pending", "runbook__category__exact": code})
            links.append((f"{label} approvals pending", absolute(f"{REQUEST_LIST}?{query}")))
    return StormSummary(
        tickets=len(items),
        hosts=len({item.host for item in items}),
        categories=tuple(by_category.most_common()),
        first_ticket=tickets[0] if tickets else "",
        last_ticket=tickets[-1] if tickets else "",
        follow_up_of=follow_up_of,
        links=tuple(links),
    )


def slack_text(text: object) -> str:
    """Text from outside (a host, a title, an alert's words, a reason) as Slack shows it, never
    as markup: &, < and > escaped as Slack's mrkdwn requires, so `<!channel>` or
    `<http://elsewhere|Approve>` arrive as the characters they are. Warden's own links are
    the only links a message makes."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _mrkdwn(text: str) -> dict[str, Any]:
    # verbatim: Slack neither turns a bare address into a link nor a name into a mention.
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def slack_message(
    kind: str,
    items: Sequence[NoticeItem],
    digest: bool,
    links: dict[int, dict[str, str]],
    summary: StormSummary | None = None,
) -> dict[str, Any]:
    """An incoming-webhook payload: `text` for any Slack-compatible receiver, `blocks` for
    Slack. `links` maps a notice to its approve and reject URLs (shared-channel links);
    a digest's `summary` comes first. Every piece of text is escaped (slack_text); only
    the links Warden builds are links."""
    follow_up = summary is not None and summary.follow_up_of is not None
    title = subject_of(kind, items, digest, follow_up).removeprefix("[Warden] ")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}}
    ]
    text_lines = [slack_text(title)]
    if summary is not None:
        about = [slack_text(line) for line in summary.lines]
        about += [f"<{url}|{slack_text(what)}>" for what, url in summary.links]
        blocks.append({"type": "section", "text": _mrkdwn("\n".join(about))})
        text_lines.append("\n".join(about))
    listed = items[:DIGEST_LISTED] if digest else items
    for item in listed:
        ticket = f"<{item.links['ticket']}|{slack_text(item.ticket_id)}>"
        parts = [f"*{slack_text(item.host)}* · {ticket} {slack_text(item.ticket_title)}"]
        if digest:  # a line each: what happened first, the rest behind the links
            parts[0] += f" · {slack_text(item.what_happened[0])}" if item.what_happened else ""
        else:
            parts += [f"• {slack_text(line)}" for line in item.what_happened]
        if item.readings and not digest:
            readings = ", ".join(f"{k} {v}" for k, v in item.readings)
            parts.append("Readings: " + slack_text(readings))
        if item.runbook:
            parts.append(
                f"Runbook *{slack_text(item.runbook)}* (risk *{slack_text(item.risk)}*): "
                f"`{slack_text(item.action)}`"
            )
            if not digest:
                parts += [f"`{slack_text(command)}`" for command in item.commands]
        if item.approval_request_id:
            left = f" · {item.time_left} left" if item.pending else ""
            parts.append(
                f"Approvals {item.approvals_so_far} of {item.approvals_needed} · "
                f"{slack_text(item.request_status)}{left}"
            )
        if item.reasons and not digest:
            parts += [f"> {slack_text(reason)}" for reason in item.reasons]
        if "review" in item.links:
            parts.append(f"<{item.links['review']}|Review it…> (acknowledge or flag)")
        verdicts = links.get(item.notice_id, {})
        if verdicts:
            parts.append(
                f"<{verdicts['approve']}|Approve…> · <{verdicts['reject']}|Reject…> "
                "(a confirmation page, after login)"
            )
        section = "\n".join(parts)[:SLACK_SECTION_LIMIT]
        blocks.append({"type": "section", "text": _mrkdwn(section)})
        text_lines.append(section)
    if len(items) > len(listed):
        more = f"…and {len(items) - len(listed)} more in Warden."
        blocks.append({"type": "context", "elements": [_mrkdwn(more)]})
        text_lines.append(more)
    return {"text": "\n\n".join(text_lines)[:SLACK_TEXT_LIMIT], "blocks": blocks[:50]}


def email_for(
    recipient: Recipient,
    kind: str,
    items: Sequence[NoticeItem],
    digest: bool,
    now: datetime,
    summary: StormSummary | None = None,
) -> EmailMultiAlternatives:
    """One person's message: their items, with approve and reject links of their own on
    each pending approval shown whole (none for an address that is not a user); a
    digest's `summary` comes first."""
    entries = []
    for item in items:
        verdicts = {}
        if item.pending and not item.brief and recipient.user_id is not None:
            verdicts = {
                verdict: link_url(item.approval_request_id, verdict, recipient.user_id)
                for verdict in Verdict.values
            }
        entries.append({"item": item, "links": verdicts})
    context = {
        "subject": subject_of(
            kind, items, digest, summary is not None and summary.follow_up_of is not None
        ),
        "summary": summary,
        "kind": NoticeKind(kind).label,
        "digest": digest,
        "review": kind in REVIEW_KINDS.values(),  # what Warden did by itself, to review
        "entries": entries,
        "recipient": recipient,
        "now": now,
        "max_age_minutes": settings.WARDEN_NOTICE_LINK_MAX_AGE_SECONDS // 60,
        "warden_url": absolute("/admin/"),
    }
    message = EmailMultiAlternatives(
        subject=context["subject"],
        body=render_to_string("notices/email.txt", context),
        to=[recipient.address],
    )
    message.attach_alternative(render_to_string("notices/email.html", context), "text/html")
    return message
