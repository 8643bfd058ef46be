"""Notices: people are told what needs them, by email and by a Slack-compatible webhook.

Told: approval requests, escalations, actions taken at L2 (PHASE-65: it acts, a person is
notified), failed actions and verifications, rollbacks, a policy or pattern lowered
to L1 (governance.promotions.demotions), and what Warden did by itself, to review
(governance.promotions.reviews: one notice each at L2, one digest at L3). Each notice carries
what a person needs to act: the host and its readings, the runbook with its risk and exact
commands, the decision's reasons, and for an approval signed approve and reject links.

Always after the change commits, never inside its transaction:

  governance.audit.log.append_events --on commit--> plans.record_notices(rows)
    notice_plans: which events people must hear about, one notice per ticket and
    transaction (a failed verification's rollback and escalation are one notice)
    -> Notice rows, then the delivery.deliver_due task (django-q2)
  delivery.deliver_due(now)
    batches.gather_due: a notice waits WARDEN_NOTICE_GROUP_WAIT_SECONDS for others of its
      kind; more hosts than WARDEN_NOTICE_DIGEST_THRESHOLD in a group go out as one digest,
      fewer as a message each (NoticeDelivery rows); L3's reviews wait
      WARDEN_REVIEW_DIGEST_MINUTES and always go out as one digest
    send: each unfinished delivery under a lease, marking each address and the webhook as
      it goes; a failure raises, so django-q2 retries, and a retry (or the warden-notices
      schedule, every minute) sends only what is left, after a back-off.

The modules, one job each: plans (which events make notices), batches (when they go out,
and together with which), items (what a notice tells, read when it is sent), recipients
(who is told), messages (the email and the webhook's payload), links (signed approve and
reject links), delivery (sending, and the django-q2 task), views (the page a link opens).
"""
