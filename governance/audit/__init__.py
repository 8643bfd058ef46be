"""The bottom of the governed world: what changed, who changed it and why, kept so that
tampering shows.

log.py chains events by HMAC and appends them in the transaction of the change;
subscribers.py tells those registered at startup (the console, the notices, remediation)
of committed events, so this package imports none of them; changes.py is the one audited
way to save a governed row, with require_permission and require_reason; permissions.py
is the table of who may do what; tickets.py moves a ticket's status with its event;
errors.py holds the refusals every action raises. checkpoints.py signs the log (a Merkle
root of every record's leaf) with signing.py's Ed25519 key and makes inclusion proofs;
verifier.py, with no Django in it, checks an export or evidence with the public key alone.
"""
