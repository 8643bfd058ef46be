"""The runbooks the Warden agent runs: `warden-runbook SUBCOMMAND`, standard library only.

One module per family: disk (quarantine, restore, purge), logs (logrotate), units (restart,
CPU quota), memory (drop caches), dns (systemd-resolved), firewall (nftables).
RUNBOOKS.md in the agent's folder describes each runbook.
"""
