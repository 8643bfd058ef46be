"""Who may do what: the Django permission each person's action checks, in one table.

The actions check these (changes.require_permission, beside this table), the notices pick
whom to tell by them, and the roles' migrations grant them. Saving a governed row (a
policy, runbook, automation target, host, ticket, feedback) checks the row's own Django
add or change permission instead (changes.record_change).
"""

from typing import Any

# The audit log: read it (only the events of one's own tickets), read all of it (and the
# console that streams it), export it.
VIEW_AUDIT = "governance.view_auditevent"
VIEW_WHOLE_AUDIT = "governance.view_whole_auditevent"
EXPORT_AUDIT = "governance.export_auditevent"
# Pause automation, and resume it.
PAUSE = "governance.add_pause"
RESUME = "governance.change_pause"
# Approve or reject a request that waits for people.
APPROVE = "governance.approve_approvalrequest"
# Accept or dismiss a proposal to raise autonomy.
DECIDE_PROPOSAL = "governance.change_autonomyproposal"
# Stop, cancel or roll back an execution: supervisors. They hear of escalations, L2
# actions, failures and rollbacks.
SUPERVISE = "remediation.change_execution"
# Acknowledge or flag an action Warden took on its own.
REVIEW = "feedback.review_postactionreview"
# Issue and revoke API tokens.
ISSUE_TOKEN = "knox.add_authtoken"
REVOKE_TOKEN = "knox.delete_authtoken"
# Add people (service users among them).
ADD_PERSON = "auth.add_user"
# Add a host; change one (rotate its agent's key).
ADD_HOST = "remediation.add_host"
CHANGE_HOST = "remediation.change_host"
# Give feedback on a ticket.
GIVE_FEEDBACK = "feedback.add_feedback"
# Open a ticket by hand or through the API; close one.
OPEN_TICKET = "remediation.add_ticket"
CLOSE_TICKET = "remediation.change_ticket"
# Send alerts (Alertmanager's webhook).
RECEIVE_ALERTS = "remediation.add_alert"
# Approve, serve or retire a model version.
SERVE_MODEL = "scoring.change_modelversion"

# The roles a service (not a person) is given a user in: it signs in with nothing but a
# token. A user in one of them is a service's, whatever other role it holds: it opens
# tickets or sends alerts, and never approves nor counts toward an approval's quorum.
SERVICE_ROLES = ("integrators", "alert senders")


def is_service_account(user: Any) -> bool:
    """Whether `user` is a service's (in a service role), not a person's."""
    if user is None or not getattr(user, "pk", None):
        return False
    return user.groups.filter(name__in=SERVICE_ROLES).exists()
