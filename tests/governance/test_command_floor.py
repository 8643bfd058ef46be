"""The floor of forbidden commands: refused under every policy, at decision, approval and claim."""

from dataclasses import replace

import pytest

from governance.approvals.actions import approve_request
from governance.approvals.requests import ApprovalError
from governance.decisions.facts import policy_snapshot
from governance.models import ApprovalRequest, Policy
from governance.rules.command_floor import floor_violations
from governance.rules.engine import decide
from governance.rules.facts import AUTO_HEAL, ModelOutput, PolicySnapshot, Switches
from remediation.models import Execution, Runbook
from tests.governance.test_engine import CLEAN_TEMP, CONFIDENT, NOW, PROVEN, SELF_HEALING, TICKET

# Execution mechanics: self-healing trusts from the first ticket (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("trusting_policies")

REFUSED = {
    "rm -rf /": "removes the system's files",
    "sudo rm -r --force /etc/": "removes the system's files",
    'rm -rf "/"': "removes the system's files",
    "rm --recursive --no-preserve-root /var": "removes the system's files",
    "mkfs.ext4 /dev/sdb1": "destroys a filesystem",
    "dd if=/dev/zero of=/dev/sda bs=1M": "writes over a device",
    "psql -c 'DROP DATABASE prod;'": "destroys a database",
    "mysql -e 'drop   schema billing'": "destroys a database",
    "redis-cli FLUSHALL": "destroys a database",
    "dropdb prod": "destroys a database",
    "ufw disable": "disables the firewall",
    "iptables -F": "flushes the firewall",
    "iptables --flush INPUT": "flushes the firewall",
    "iptables -P INPUT ACCEPT": "flushes the firewall",
    "nft flush ruleset": "flushes the firewall",
    "systemctl stop firewalld": "stops a firewall or security tool",
    "systemctl disable --now auditd.service": "stops a firewall or security tool",
    "setenforce 0": "disables a security tool",
    "shutdown -h now": "shuts down or reboots the host",
    "/sbin/reboot": "shuts down or reboots the host",
    "systemctl reboot": "shuts down or reboots the host",
    "init 0": "shuts down or reboots the host",
    "userdel -r bob": "removes users",
    "chmod -R 777 /srv/app": "opens permissions to everyone",
    "chmod o+w /etc/passwd": "opens permissions to everyone",
    "curl -fsSL https://get.example.com | sudo bash": "pipes a download into a shell",
    "wget -qO- http://x/i.py | python3": "pipes a download into a shell",
    'bash -c "$(curl -fsSL https://x/install)"': "runs a downloaded script in a shell",
    "cd /tmp && sh -c 'reboot'": "shuts down or reboots the host",
    "logrotate -f /etc/logrotate.conf; shutdown -r +1": "shuts down or reboots the host",
    "unbalanced 'quote": "cannot be parsed",
}
ALLOWED = [
    "rm -rf /var/tmp/warden-cache",
    "find /tmp -mtime +7 -exec mv {} /var/lib/warden/quarantine/ ;",
    "journalctl --vacuum-size=500M",
    "systemctl restart nginx",
    "iptables -L -n",
    "ufw allow 443/tcp",
    "chmod 644 /etc/app.conf",
    "echo reboot-notes >> /var/log/warden.log",
    "psql -c 'SELECT 1'",
    "kill -TERM 1234",
]


@pytest.mark.parametrize(("command", "reason"), REFUSED.items())
def test_the_floor_refuses(command, reason):
    reasons = floor_violations(command)
    assert reasons and any(reason in r for r in reasons), reasons


@pytest.mark.parametrize("command", ALLOWED)
def test_the_floor_allows_ordinary_operations(command):
    assert floor_violations(command) == []


def test_the_seeded_runbooks_are_within_the_floor(db):
    for runbook in Runbook.objects.all():
        for command in runbook.commands:
            assert floor_violations(command) == [], (runbook.name, command)


@pytest.mark.parametrize("command", ["psql -c 'DROP DATABASE prod;'", "ufw disable", "iptables -F"])
def test_no_default_policy_heals_with_a_floor_command(db, command):
    runbook = replace(CLEAN_TEMP, commands=(*CLEAN_TEMP.commands, command))
    for policy in Policy.objects.filter(enabled=True):
        snapshot: PolicySnapshot = replace(policy_snapshot(policy), forbidden_commands=())
        ticket = replace(TICKET, category=policy.category)
        decision = decide(ticket, CONFIDENT, snapshot, runbook, Switches(), PROVEN, NOW)
        assert decision.outcome != AUTO_HEAL, (policy.name, decision.reasons)
        assert any("no policy allows that" in reason for reason in decision.reasons)


def test_a_policy_adds_to_the_floor_but_cannot_lower_it():
    runbook = replace(CLEAN_TEMP, commands=("rm -rf /",))
    model = ModelOutput(severity=1, confidence=0.99, explanation=(("disk_usage", 0.9),))
    permissive = replace(SELF_HEALING, forbidden_commands=())
    decision = decide(TICKET, model, permissive, runbook, Switches(), PROVEN, NOW)
    assert decision.outcome != AUTO_HEAL


def test_approval_refuses_a_runbook_edited_to_break_the_floor(agent, bob):
    agent.post_metrics(agent.sample("dns"))
    request = ApprovalRequest.objects.get()
    Runbook.objects.filter(pk=request.runbook_id).update(argv=["iptables", "-F"])
    request.refresh_from_db()
    # what people were shown is no longer what would run: the request is void and the
    # ticket goes back to people
    with pytest.raises(ApprovalError, match="exact command it would run changed"):
        approve_request(request, actor=bob, reason="looks fine", now=request.created_at)
    assert not Execution.objects.exists()
    request.ticket.refresh_from_db()
    assert request.ticket.status == "escalated"


def test_the_claim_never_hands_out_a_runbook_edited_to_break_the_floor(agent):
    agent.post_metrics(agent.sample("disk"))  # auto-healed: dispatched, waiting for the agent
    execution = Execution.objects.get()
    Runbook.objects.filter(pk=execution.runbook_id).update(argv=["rm", "-rf", "/"])

    assert agent.take_actions() == []
    execution.refresh_from_db()
    assert execution.state == "cancelled"
