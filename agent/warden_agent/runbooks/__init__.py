"""The runbooks the Warden agent runs: `warden-runbook SUBCOMMAND`, standard library only.

One module or package per family: disk (quarantine, restore, purge; a package), logs
(logrotate), units (restart, CPU quota), memory (drop caches), dns (systemd-resolved),
firewall (nftables; a package).
RUNBOOKS.md in the agent's folder describes each runbook.
"""
