"""Approvals: an action that waits for people, until enough of them approve, one rejects,
or it expires.

actions.py requests approval for a decided action, approves and rejects (people's actions,
with quorum, no self-approval and the approver's own reason), voids a request whose
facts changed, and expires unanswered ones; the last approval queues the execution in
the same transaction.
"""
