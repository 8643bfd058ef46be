"""The hash-chained audit log: its events and the head each append locks."""

from django.db import models


class AuditChainHead(models.Model):
    """The last link of the audit chain; locked once per transaction that appends."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    sequence = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64, default="0" * 64)

    def __str__(self) -> str:
        return f"audit chain head #{self.sequence}"


class AuditEvent(models.Model):
    """One state change, hash-chained to the one before: tampering breaks the chain."""

    sequence = models.PositiveBigIntegerField(unique=True)
    created_at = models.DateTimeField(db_index=True)
    actor = models.CharField(max_length=200)
    action = models.CharField(max_length=100, db_index=True)
    object_type = models.CharField(max_length=50)
    object_id = models.CharField(max_length=64)
    ticket_id = models.CharField(max_length=32, blank=True, db_index=True)
    summary = models.CharField(max_length=500)
    data = models.JSONField(default=dict, blank=True)
    # The digest of the governed row's state as this change left it ("": the object is not a
    # governed row, or the event is older than digests); governance/audit/state.py.
    object_state = models.CharField(max_length=64, blank=True, default="")
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)
    # SHA-256 of the record's canonical bytes (governance/audit/verifier.py), written with
    # it: checkpoints and inclusion proofs read these instead of re-reading every record.
    leaf_hash = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["sequence"]
        permissions = [
            ("export_auditevent", "Can export the audit trail"),
            # Without it, view_auditevent reads only the events of one's own tickets.
            ("view_whole_auditevent", "Can read the whole audit trail"),
        ]

    def __str__(self) -> str:
        return f"#{self.sequence} {self.action}"


class AuditCheckpoint(models.Model):
    """The audit log signed at a size: the Merkle root of its first `tree_size` records,
    the chain's hash there, the time, signed with Warden's Ed25519 key (its id and public
    key kept, so keys can rotate and every key that ever signed is published)."""

    tree_size = models.PositiveBigIntegerField(unique=True)
    root_hash = models.CharField(max_length=64)
    head_hash = models.CharField(max_length=64)
    signed_at = models.DateTimeField()
    key_id = models.CharField(max_length=32)
    public_key = models.CharField(max_length=64)  # raw Ed25519 public key, hex
    signature = models.CharField(max_length=100)
    # The tree's perfect subtrees' roots: the next checkpoint reads only the newer records.
    frontier = models.JSONField(default=list)

    class Meta:
        ordering = ["-tree_size"]

    def __str__(self) -> str:
        return f"audit checkpoint #{self.tree_size}"
