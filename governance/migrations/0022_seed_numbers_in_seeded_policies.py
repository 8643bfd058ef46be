"""The seed's numbers in the policies 0004 seeded: nothing acts by itself below the
seed's "medium" reliability (60), and what may act asks for 3 similar resolved tickets.

Each policy is raised only while it still holds what 0004 seeded in the fields raised
here: a threshold people already changed is theirs and stays as they set it. Each raise
is a new version of the policy (a history row whose reason says why); the audit event
for it is appended after migrate (governance.policies.upgrades), where the audit log's
key and chain are at hand.
"""

from django.db import migrations
from django.utils import timezone

# Kept in step with governance.policies.upgrades.SEED_NUMBERS_REASON.
REASON = (
    "the seed's numbers: no automatic action below reliability 60 (the seed's medium "
    "band), and 3 similar resolved tickets before acting (the seed's step 6)"
)
SELF_HEALING_WAS = (
    "heal themselves at L3 when the model is at least 80% confident: no approval, at most "
    "10 actions an hour and 20% of the fleet at once."
)
SELF_HEALING_NOW = (
    "heal themselves at L3 when the model is at least 80% confident, reliability is at "
    "least 60 and 3 similar tickets were resolved: no approval, at most 10 actions an hour "
    "and 20% of the fleet at once."
)
# name: (what 0004 seeded, what the seed's numbers ask), in the fields raised.
RAISES = {
    **{
        f"{category}-self-healing": (
            {"min_reliability_score": 45.0, "min_similar_tickets": 0},
            {"min_reliability_score": 60.0, "min_similar_tickets": 3},
        )
        for category in ("disk", "memory", "cpu")
    },
    **{
        name: ({"min_similar_tickets": 0}, {"min_similar_tickets": 3})
        for name in ("cache-remediation", "network-remediation", "storage-remediation")
    },
}


def raise_seeded(apps, schema_editor):
    Policy = apps.get_model("governance", "Policy")
    HistoricalPolicy = apps.get_model("governance", "HistoricalPolicy")
    copied = [field.attname for field in Policy._meta.concrete_fields]
    now = timezone.now()
    for policy in Policy.objects.filter(name__in=RAISES).order_by("pk"):
        was, now_asks = RAISES[policy.name]
        if any(getattr(policy, field) != value for field, value in was.items()):
            continue  # people changed it: their numbers stand
        for field, value in now_asks.items():
            setattr(policy, field, value)
        if policy.description.endswith(SELF_HEALING_WAS):
            policy.description = policy.description.removesuffix(SELF_HEALING_WAS) + (
                SELF_HEALING_NOW
            )
        policy.save()
        HistoricalPolicy.objects.create(
            **{name: getattr(policy, name) for name in copied},
            history_date=now,
            history_type="~",
            history_change_reason=REASON,
        )


class Migration(migrations.Migration):
    dependencies = [("governance", "0021_policy_service_feedback_weight_and_proposal_backing")]

    operations = [migrations.RunPython(raise_seeded, migrations.RunPython.noop)]
