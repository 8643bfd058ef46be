"""Seed the ticket counter, the runbook catalogue and the sweeper schedule."""

from django.db import migrations

RUNBOOKS = [
    {
        "name": "clean-temp-and-rotate-logs",
        "title": "Clean temporary files and rotate logs",
        "category": "disk",
        "action": "clean_temp_and_rotate_logs",
        "rollback_action": "restore_quarantined_files",
        "action_type": "safe_write",
        "system": "linux",
        "reversible": True,
        "commands": [
            "find /tmp -mtime +7 -exec mv {} /var/lib/warden/quarantine/ ;",
            "logrotate --force /etc/logrotate.conf",
        ],
        "blast_radius": "one host: /tmp and /var/log",
        "description": "Moves week-old temporary files to quarantine (restorable) and rotates logs.",
    },
    {
        "name": "restart-leaking-service",
        "title": "Restart the leaking service",
        "category": "memory",
        "action": "restart_leaking_service",
        "rollback_action": "restart_service",
        "action_type": "safe_write",
        "system": "linux",
        "reversible": True,
        "commands": ["systemctl restart app.service"],
        "blast_radius": "one service on one host",
        "description": "Restarts the service whose memory keeps growing.",
    },
    {
        "name": "throttle-runaway-process",
        "title": "Throttle the runaway process",
        "category": "cpu",
        "action": "throttle_runaway_process",
        "rollback_action": "remove_cpu_throttle",
        "action_type": "safe_write",
        "system": "linux",
        "reversible": True,
        "commands": ["systemctl set-property --runtime app.service CPUQuota=50%"],
        "blast_radius": "one service on one host",
        "description": "Caps the CPU of the process that ran away; the rollback lifts the cap.",
    },
    {
        "name": "switch-dns-resolver",
        "title": "Switch to the standby DNS resolver",
        "category": "dns",
        "action": "switch_dns_resolver",
        "rollback_action": "restore_dns_resolver",
        "action_type": "critical_write",
        "system": "dns",
        "reversible": True,
        "commands": ["resolvectl dns eth0 10.0.0.53"],
        "blast_radius": "every lookup the host makes",
        "description": "Points the host at the standby resolver; network-impacting, so people decide.",
    },
    {
        "name": "apply-firewall-change",
        "title": "Apply the requested firewall change",
        "category": "firewall",
        "action": "apply_firewall_change",
        "rollback_action": "revert_firewall_change",
        "action_type": "critical_write",
        "system": "network",
        "reversible": True,
        "commands": ["nft -f /etc/warden/requested-change.nft"],
        "blast_radius": "the host's inbound and outbound traffic",
        "description": "Applies a requested port change; security-sensitive, so people decide.",
    },
]


def seed(apps, schema_editor):
    Counter = apps.get_model("remediation", "Counter")
    Runbook = apps.get_model("remediation", "Runbook")
    Schedule = apps.get_model("django_q", "Schedule")
    Counter.objects.get_or_create(name="ticket")
    for runbook in RUNBOOKS:
        Runbook.objects.update_or_create(name=runbook["name"], defaults=runbook)
    Schedule.objects.update_or_create(
        name="warden-sweep",
        defaults={
            "func": "remediation.tasks.sweep",
            "schedule_type": "I",
            "minutes": 1,
            "repeats": -1,
        },
    )


def unseed(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name="warden-sweep").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("remediation", "0001_initial"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(seed, unseed)]
