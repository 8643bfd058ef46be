# ruff: noqa: E501  (the phrasings are data, one to a line, easier to read whole)
"""The seed corpus of incident texts the triage model starts from, generated deterministically.

Each row is a ticket as people and ITSM tools write them (a title and a description) with
the category and the runbook that fixes it, or "" where no runbook applies and a person
picks (storage and cache have none; some security and DNS incidents need a person's
judgement whatever the catalogue holds). Every label has several phrasings (TEMPLATES),
filled with host names, numbers, paths and services, then roughened the way real tickets
are: ticket boilerplate, typos, shouting or lower case, a title with no description.

`incidents.jsonl` beside this file is what `generate_corpus()` returns with the default
seed; regenerate it with `python -m scoring.triage.corpus` after changing the templates
(a test checks the two agree). Pure Python: no Django, no database.
"""

import json
import random
import string
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

CORPUS_PATH = Path(__file__).with_name("incidents.jsonl")
CORPUS_SEED = 21
# Rows per label: ~14 labels x 110 = ~1,500 rows.
ROWS_PER_LABEL = 110


@dataclass(frozen=True)
class Incident:
    title: str
    description: str
    category: str
    runbook: str  # "" where no runbook applies: a person picks
    # Which of its label's TEMPLATES it was written from ("disk:rotate-logs#3"): evaluation
    # on phrasings the model never saw holds whole phrasings out (bench/bench_triage.py).
    phrasing: str = ""

    @property
    def text(self) -> str:
        return incident_text(self.title, self.description)


def incident_text(title: str, description: str) -> str:
    """What the model reads of a ticket: its title, then its description."""
    return f"{title}\n{description}".strip()


# The catalogue as the seed corpus knows it: runbook -> (category, risk class). The
# database's Runbook rows are the truth at training time (scoring.triage.history); this
# copy lets the pure training and the tests run without one.
CATALOGUE: dict[str, tuple[str, str]] = {
    "clean-temp-and-rotate-logs": ("disk", "safe_write"),
    "rotate-logs": ("disk", "safe_write"),
    "restart-leaking-service": ("memory", "safe_write"),
    "drop-page-cache": ("memory", "safe_write"),
    "throttle-runaway-process": ("cpu", "safe_write"),
    "restart-dns-resolver": ("dns", "safe_write"),
    "switch-dns-resolver": ("dns", "critical_write"),
    "apply-firewall-change": ("firewall", "critical_write"),
    "rate-limit-port": ("network", "critical_write"),
    "block-address": ("security", "critical_write"),
    "restart-web-service": ("server", "safe_write"),
}

HOSTS = [
    "web-01", "web-03", "web-prod-07", "app01", "app-eu-2", "api-gw-1", "db-prod-02",
    "pay-svc-11", "orders-worker-4", "batch-02", "k8s-node-13", "edge-lb-2", "cache-01",
    "srv-intranet", "mail-relay-1", "ci-runner-05", "ip-10-2-14-33", "lnx-fra-091",
    "WEB-PROD-02", "app-us-east-1c", "reporting01", "search-3", "vpn-gw-a", "nfs-01",
]  # fmt: skip
MOUNTS = ["/", "/var", "/var/log", "/data", "/opt/app", "/home", "/srv", "/tmp"]
LOGS = [
    "/var/log/app/app.log", "/var/log/nginx/access.log", "/var/log/syslog",
    "/opt/app/logs/server.log", "/var/log/journal", "/var/log/app/debug.log.1",
]  # fmt: skip
TEMPS = ["/tmp", "/var/tmp", "/tmp/uploads", "/var/tmp/sessions", "/opt/app/tmp", "/tmp/cache"]
SERVICES = [
    "app.service", "payments-api", "orders-worker", "the java app", "tomcat", "node api",
    "celery worker", "billing backend", "the app", "reporting service",
]  # fmt: skip
PROCESSES = ["java", "python3", "node", "ffmpeg", "backup.sh", "php-fpm", "gzip", "rsync", "ruby"]
DOMAINS = [
    "api.partner.com", "db.internal", "s3.amazonaws.com", "login.corp.example",
    "auth.example.net", "registry.npmjs.org", "payments.example.com", "ldap.corp",
]  # fmt: skip
RESOLVERS = ["10.0.0.2", "10.0.0.53", "192.168.1.1", "10.10.0.10", "172.16.0.2"]
PORTS = ["443", "80", "8080", "25", "22", "3306", "5432", "8443", "6379"]
USERS = ["jsmith", "a.khan", "maria.g", "svc_backup", "root", "admin", "deploy", "t.nguyen"]
TEAMS = ["payments", "platform", "data", "web", "ops", "finance", "mobile"]
VENDORS = ["Zabbix", "Nagios", "Datadog", "PagerDuty", "Prometheus", "ServiceNow", "Grafana"]

# Per label: (title, description) phrasings. Slots in braces are filled from _slot_values.
TEMPLATES: dict[tuple[str, str], list[tuple[str, str]]] = {
    ("disk", "clean-temp-and-rotate-logs"): [
        (
            "Disk usage high on {host}",
            "{mount} is at {pct}% on {host}. Looks like {temp} is full of old temp files and the logs under {log} are not being cleaned up.",
        ),
        (
            "{host}: filesystem {mount} {pct}% full",
            "Alert from {vendor}: free space on {mount} below {free}%. du shows {gb} GB in {temp} and rotated logs.",
        ),
        (
            "Low disk space - {host}",
            "Users report uploads failing with 'No space left on device'. {temp} has thousands of stale files older than a week.",
        ),
        (
            "no space left on device on {host}",
            "app crashing, write errors. df -h says {mount} {pct}%. lots of junk in {temp} and old .gz logs",
        ),
        (
            "Disk almost full {host} {mount}",
            "Please clean up temp files and old logs, disk at {pct} percent and growing about {gb} GB a day.",
        ),
        (
            "[{vendor}] DiskSpaceLow {host}",
            "Filesystem {mount} usage {pct}% (threshold 90%). Largest dirs: {temp} ({gb}G), /var/log ({gb2}G).",
        ),
        (
            "root partition filling up",
            "On {host} the root fs is {pct}% used, mostly tmp files left by batch jobs and logs nobody rotated. Can we purge the old stuff?",
        ),
        (
            "Storage warning: {mount} on {host}",
            "Disk utilisation crossed {pct}%. Temporary files in {temp} and log files in {log} are the main consumers.",
        ),
        ("disk full", "{host} disk full again, temp dir and logs"),
        (
            "Server {host} running out of disk",
            "Hi team, our server is running out of disk space ({pct}% on {mount}). I think it's the temp folder and old log files. Thanks, {user}",
        ),
    ],
    ("disk", "rotate-logs"): [
        (
            "Log file {log} too big on {host}",
            "{log} has grown to {gb} GB, logrotate seems not to have run. Disk at {pct}%.",
        ),
        (
            "logrotate not running on {host}",
            "The app log is never rotated, {log} is {gb}G and still growing. Please force a rotation.",
        ),
        (
            "{host}: huge application log",
            "Application logging in debug mode filled {mount} ({pct}%). Single file {log} is {gb} GB.",
        ),
        (
            "Please rotate logs on {host}",
            "Log rotation failed last night (cron error), {log} keeps growing. {mount} at {pct}%.",
        ),
        (
            "[{vendor}] LogSizeExceeded {host}",
            "File {log} size {gb} GB exceeds limit 2 GB. Rotation policy /etc/logrotate.d/app.",
        ),
        (
            "access log not rotated",
            "nginx access log on {host} is {gb}GB, rotation stopped after the config change on friday",
        ),
        (
            "Disk filling because of logs - {host}",
            "Disk usage on {mount} climbing {pct}%, it is only the log file {log}, nothing else. Needs logrotate --force.",
        ),
        ("log growth {host}", "{log} grows ~{gb} GB/day, never rotated since deploy"),
        (
            "Logs are eating the disk on {host}",
            "Since the last release the service writes very verbose logs and the daily rotation did not happen. The current log is {gb} gigabytes.",
        ),
    ],
    ("memory", "restart-leaking-service"): [
        (
            "Memory leak in {svc} on {host}",
            "RSS of {svc} grows steadily, now {mb} MB after {hours} hours. Memory at {pct}%. A restart fixes it for a day.",
        ),
        (
            "{host}: memory usage {pct}%",
            "{vendor}: memory usage {pct}% for 15 min. Top consumer: {svc} ({mb} MB) and it keeps growing.",
        ),
        (
            "OOM killer on {host}",
            "The kernel OOM killer fired twice, {svc} memory keeps climbing until the box swaps. Restart of the service needed.",
        ),
        (
            "{svc} eating all RAM",
            "on {host} {svc} uses {mb}MB and grows every hour. probably a leak, please restart it",
        ),
        (
            "High memory consumption - {host}",
            "Memory utilisation is at {pct}% and increasing linearly since the deployment at {time}. {svc} heap is not released.",
        ),
        (
            "[{vendor}] MemoryHigh {host}",
            "mem_used_percent={pct} process={svc} rss_mb={mb} trend=increasing",
        ),
        (
            "app slow, swap full on {host}",
            "Swap is full and {svc} is at {mb} MB resident. It was 400 MB yesterday. Looks like the leak again.",
        ),
        (
            "Java heap growing {host}",
            "GC can't reclaim memory, heap usage {pct}%, old gen full. Restarting the app usually helps.",
        ),
        ("memory leak", "{svc} leaking memory on {host}"),
        (
            "Service {svc} memory keeps increasing",
            "Hi, we noticed the memory of {svc} on {host} keeps increasing over days until it crashes with out of memory. Can someone restart it? {user}",
        ),
    ],
    ("memory", "drop-page-cache"): [
        (
            "High buff/cache on {host}",
            "free -m shows {mb} MB in buff/cache, available memory low, no single process is large. Page cache needs dropping.",
        ),
        (
            "{host}: memory pressure from page cache",
            "After the nightly backup the page cache holds {pct}% of RAM and the app gets little free memory. No leak in any process.",
        ),
        (
            "Cached memory not released {host}",
            "Memory used {pct}% but most of it is cache (dentries and inodes) after the rsync job. Drop caches please.",
        ),
        (
            "slab / dentry cache huge on {host}",
            "slabtop shows dentry cache {mb} MB after find over millions of files. processes themselves are small",
        ),
        (
            "[{vendor}] MemoryAvailableLow {host}",
            "mem_available_percent={free} cached_mb={mb} top_process_rss_mb=300 cause=page_cache",
        ),
        (
            "Memory full of file cache on {host}",
            "The backup read the whole disk and now the page cache has all memory. Sync and drop the caches, no restart needed.",
        ),
        (
            "low available memory - cache",
            "{host}: available memory {free}%, buffers/cache {mb}MB, nothing leaking, just cache",
        ),
        (
            "Page cache bloat after batch job on {host}",
            "Each night the batch import leaves {mb} MB of cached pages; services start swapping. echo 3 > drop_caches fixed it last time.",
        ),
    ],
    ("cpu", "throttle-runaway-process"): [
        (
            "CPU at {pct}% on {host}",
            "A single {proc} process (pid {pid}) is using all cores since {time}. Load average {load}.",
        ),
        (
            "{host}: runaway process",
            "{proc} spinning at 100% CPU, the app is starving. Please cap it.",
        ),
        (
            "High CPU load {host}",
            "{vendor}: cpu_usage={pct} for 20 minutes, top: {proc} pid {pid} {pct}%.",
        ),
        (
            "Server {host} very slow, CPU maxed",
            "Everything is slow on {host}, top shows {proc} at {pct}% CPU. Looks stuck in a loop.",
        ),
        ("[{vendor}] CPUHigh {host}", "cpu_busy_percent={pct} load1={load} top_process={proc}"),
        ("process hogging cpu", "{proc} on {host} hogging cpu {pct}%, other services timing out"),
        (
            "Load average {load} on {host}",
            "Load keeps above {load} with one {proc} worker using all CPU time. Can we throttle it instead of killing it?",
        ),
        (
            "CPU spike - {host}",
            "CPU usage spiked to {pct}% and stayed there. Culprit is {proc} (pid {pid}), started by cron at {time}.",
        ),
        ("cpu 100", "{host} cpu 100% {proc}"),
        (
            "Runaway {proc} consuming CPU on {host}",
            "Hello, since this morning one {proc} process consumes almost all CPU on {host} and requests time out. Please limit its CPU quota. Regards, {user}",
        ),
    ],
    ("dns", "restart-dns-resolver"): [
        (
            "DNS lookups slow on {host}",
            "Name resolution on {host} takes {ms} ms, systemd-resolved seems stuck; other hosts resolve fine with the same servers.",
        ),
        (
            "{host}: local resolver hung",
            "resolvectl query hangs on {host} only. The upstream {resolver} answers from other machines. Restarting systemd-resolved helped before.",
        ),
        (
            "Stale DNS cache on {host}",
            "{host} still resolves {domain} to the old address after the migration; the cache needs flushing.",
        ),
        (
            "resolved not answering on {host}",
            "127.0.0.53 times out on {host}, upstream servers fine. flush caches + restart resolver pls",
        ),
        (
            "[{vendor}] DNSLatencyHigh {host}",
            "dns_latency_ms={ms} resolver=127.0.0.53 upstream_ok=true scope=single_host",
        ),
        (
            "Cannot resolve {domain} from {host}",
            "Only {host} fails to resolve {domain} (SERVFAIL from the local stub), the rest of the fleet is fine.",
        ),
        (
            "name resolution intermittent on {host}",
            "Every few minutes DNS lookups on {host} fail for a few seconds; the local systemd-resolved cache looks corrupted.",
        ),
        (
            "DNS cache poisoned/stale {host}",
            "Old records cached on {host} after the DNS change at {time}. Flush and restart the resolver.",
        ),
        ("dns slow", "{host} dns {ms}ms, local resolver"),
    ],
    ("dns", "switch-dns-resolver"): [
        (
            "Primary DNS server {resolver} down",
            "The primary resolver {resolver} stopped answering at {time}; all hosts in the subnet including {host} fail lookups. Switch to the standby resolver.",
        ),
        (
            "DNS outage - resolver {resolver} unreachable",
            "{vendor}: resolver {resolver} not responding from {host} and others, lookups time out after {ms} ms. Failover to 10.0.0.53 needed.",
        ),
        (
            "All name resolution failing on {host}",
            "Upstream DNS {resolver} is dead (no reply to any query, ping ok). Every service on {host} fails to resolve {domain}.",
        ),
        (
            "[{vendor}] DNSUpstreamDown {host}",
            "upstream={resolver} status=unreachable dns_latency_ms={ms} affected_hosts=many",
        ),
        (
            "upstream dns dead",
            "{resolver} not answering, whole segment cant resolve anything incl {host}. need to point eth0 to standby",
        ),
        (
            "Corporate DNS server failure",
            "The DNS server {resolver} crashed (hardware). {host} and the rest of the fleet must use the standby resolver until it is repaired.",
        ),
        (
            "DNS resolver {resolver} timing out for every host",
            "Not a local problem: every machine using {resolver} sees {ms} ms timeouts. Change resolvers to the secondary.",
        ),
        (
            "Switch {host} to backup DNS",
            "Primary name server {resolver} is being decommissioned early / is down. Please move {host} to the standby resolver.",
        ),
        ("dns server down", "{resolver} down, {host} affected"),
    ],
    ("dns", ""): [
        (
            "Domain {domain} does not resolve anywhere",
            "The public record for {domain} was deleted at the registrar; resolvers are fine. Needs the DNS team to recreate the record.",
        ),
        (
            "Wrong A record for {domain}",
            "{domain} points to an old IP since the zone edit at {time}. This is a zone change, not a resolver issue.",
        ),
        (
            "Domain expired - {domain}",
            "Registrar says {domain} expired yesterday; customers cannot reach us. Finance must renew it.",
        ),
        (
            "DNSSEC validation failing for {domain}",
            "Resolvers return SERVFAIL for {domain} because the DS record does not match after the key rollover.",
        ),
        (
            "Request: new CNAME for {domain}",
            "Please add a CNAME record app.{domain} pointing to the load balancer for the {team} team.",
        ),
        (
            "TTL too high on {domain} records",
            "Changes to {domain} take a day to propagate, the zone TTL is 86400. Needs a zone owner decision.",
        ),
        (
            "split-horizon dns mismatch",
            "internal and external views of {domain} disagree, zone files out of sync",
        ),
        (
            "MX record missing for {domain}",
            "Mail bounces because the MX record of {domain} disappeared from the zone after a migration.",
        ),
    ],
    ("firewall", "apply-firewall-change"): [
        (
            "Firewall change request: open port {port} on {host}",
            "Please allow TCP {port} from {cidr} to {host} for the {team} team. Change approved in CAB {ticket}.",
        ),
        (
            "Allow {cidr} to reach {host}:{port}",
            "New partner integration needs inbound {port}/tcp from {cidr}. nftables rule to be added.",
        ),
        (
            "[{vendor}] firewall_change_requested {host}",
            "A firewall rule change was requested for {host}: allow port {port} from {cidr}.",
        ),
        (
            "FW rule needed for new service",
            "The {team} service on {host} listens on {port}; add an allow rule from {cidr} to the host firewall.",
        ),
        (
            "Close port {port} on {host}",
            "Security review found {port} open to the world on {host}; update the firewall ruleset to deny it except from {cidr}.",
        ),
        (
            "nftables change {host}",
            "add rule inet filter input ip saddr {cidr} tcp dport {port} accept - requested by {user}",
        ),
        (
            "Whitelist IP in firewall",
            "Please whitelist {ip} on {host} firewall for port {port}, vendor support access.",
        ),
        (
            "Firewall rule update for {host}",
            "Hi, as discussed we need the firewall on {host} updated so that {cidr} can connect on port {port}. Ticket {ticket}. Thanks, {user}",
        ),
        ("fw change", "open {port} on {host} from {cidr}"),
    ],
    ("network", "rate-limit-port"): [
        (
            "Traffic flood on port {port} - {host}",
            "{host} receives {n} connections/s on port {port} from many sources; the service is saturated. Rate-limit the port.",
        ),
        (
            "SYN flood against {host}:{port}",
            "netstat shows thousands of SYN_RECV on {port}; legit users time out. Throttle new connections.",
        ),
        (
            "[{vendor}] ConnectionRateHigh {host}",
            "port={port} new_conn_per_s={n} baseline=80 bandwidth_mbps={mb}",
        ),
        (
            "Bot traffic hammering {host}",
            "Crawler/bot traffic on port {port} at {n} req/s is eating the bandwidth, need a rate limit on that port.",
        ),
        (
            "Network saturation {host} port {port}",
            "Link at {pct}% utilisation, nearly all of it inbound TCP {port}. Limit the rate until the upstream filters it.",
        ),
        ("too many connections on {port}", "{host} port {port} getting hammered {n}/s, app dying"),
        (
            "DDoS-like traffic on {host}",
            "Abnormal inbound traffic on TCP {port} ({n} new connections a second from hundreds of IPs). Please apply a connection rate limit.",
        ),
        (
            "Packet storm on {host}",
            "Retransmits and drops on eth0, port {port} flooded by retrying clients after the outage. Rate limiting port {port} would protect the service.",
        ),
        ("conn flood", "{host}:{port} {n} conn/s"),
    ],
    ("security", "block-address"): [
        (
            "Brute force SSH from {ip}",
            "{host} auth.log shows {n} failed root logins from {ip} in 10 minutes. Block the address.",
        ),
        (
            "Malicious IP {ip} scanning {host}",
            "IDS alert: {ip} port-scanning {host} and probing /wp-admin. Please block it.",
        ),
        (
            "[{vendor}] SuspiciousSource {host}",
            "source_ip={ip} failed_logins={n} target={host} action_recommended=block",
        ),
        (
            "Credential stuffing from {ip}",
            "Login API on {host} gets {n} attempts/min from {ip} with leaked passwords. Ban that IP.",
        ),
        ("block {ip}", "{ip} attacking {host}, {n} failed logins, block it"),
        (
            "Attack from single address on {host}",
            "WAF logs show SQL injection attempts from {ip} against {host}. Please add it to the block list.",
        ),
        (
            "Repeated failed logins {host}",
            "fail2ban not installed on {host}; {ip} keeps trying usernames ({n} attempts). Request to block the source address.",
        ),
        (
            "Hostile IP hitting {host}",
            "Hello SOC, the address {ip} has been hammering our login page on {host} all night. Can we block it for now? {user}",
        ),
        (
            "Exploit attempts from {ip}",
            "Log4Shell-style payloads in requests from {ip} to {host}. Block address.",
        ),
    ],
    ("security", ""): [
        (
            "Phishing email reported by {user}",
            "{user} received an email asking to reset their password on a fake portal and clicked the link. Please investigate.",
        ),
        (
            "Possible compromised account {user}",
            "Impossible travel alert for {user}: logins from two countries within an hour. Account may be compromised.",
        ),
        (
            "Malware detected on {host}",
            "EDR flagged a suspicious binary in /tmp on {host} ({proc} child process). Needs forensic analysis.",
        ),
        (
            "Leaked API key in git repo",
            "A production API key for {domain} was committed to a public repository by {user}. Rotate and assess exposure.",
        ),
        (
            "Suspicious sudo usage on {host}",
            "{user} ran unusual commands as root on {host} at {time}. Security review required.",
        ),
        (
            "Vulnerability scan findings {host}",
            "The quarterly scan lists {n} high CVEs on {host} (openssl, kernel). Patch plan needed.",
        ),
        (
            "Data exfiltration suspected",
            "Outbound traffic of {gb} GB from {host} to an unknown storage bucket overnight. Investigate before anything else.",
        ),
        (
            "security incident - ransomware note",
            "a file README_DECRYPT.txt appeared on {host} shares, files renamed. escalate to security now",
        ),
        (
            "Unauthorized admin account on {host}",
            "A new local admin '{user}2' was created on {host} without a change ticket.",
        ),
    ],
    ("server", "restart-web-service"): [
        (
            "Website down on {host}",
            "nginx on {host} returns 502/connection refused since {time}; backend is fine. Restart the web service.",
        ),
        (
            "{host}: nginx not responding",
            "HTTP health check to {host} fails (timeout after 10 s). nginx workers stuck, restarting nginx fixed it last time.",
        ),
        (
            "[{vendor}] HTTPCheckFailed {host}",
            "check=http url=http://{host}/health status=down code=502 service=nginx",
        ),
        (
            "Web server hung on {host}",
            "The web server process is up but does not answer any request; port 80 accepts then hangs. Please restart web service.",
        ),
        ("site unreachable {host}", "our site on {host} down, nginx dead? restart pls"),
        (
            "502 Bad Gateway from {host}",
            "Customers get 502 Bad Gateway on every page served by {host}. App servers respond directly; the front web server is the problem.",
        ),
        (
            "nginx crashed on {host}",
            "nginx.service failed after the config reload at {time} (worker segfault). Needs a restart of the web service.",
        ),
        (
            "Web service down",
            "Hi, the web service on {host} is not answering since {time}, the monitoring page is red. Could you restart it? Thanks {user}",
        ),
        (
            "HTTP 503 on {host}",
            "{host} answering 503 for all vhosts, nginx stuck, restart required",
        ),
    ],
    ("storage", ""): [
        (
            "RAID degraded on {host}",
            "mdadm reports /dev/md0 degraded, disk sdb failed. Replace the drive.",
        ),
        (
            "NFS mount stale on {host}",
            "{mount} on {host} returns 'Stale file handle'; the NFS server nfs-01 was restarted at {time}.",
        ),
        (
            "SAN latency high",
            "Storage array latency {ms} ms on LUN 12 used by {host}; vendor case opened.",
        ),
        (
            "[{vendor}] SMART failure {host}",
            "SMART: Reallocated_Sector_Ct={n} on /dev/sda, drive predicted to fail.",
        ),
        (
            "Volume read-only on {host}",
            "{mount} remounted read-only after I/O errors on {host}. fsck needed.",
        ),
        (
            "Backup volume quota exceeded",
            "The backup storage bucket for {team} hit its quota ({gb} TB); nightly backups fail.",
        ),
        (
            "iSCSI target lost {host}",
            "{host} lost its iSCSI session to the storage array, multipath shows all paths failed.",
        ),
        ("disk I/O errors", "{host} dmesg full of I/O errors on sdb, blk_update_request"),
        (
            "Snapshot failing for {host} volumes",
            "EBS snapshot of the {mount} volume on {host} has been stuck in pending for {hours} hours.",
        ),
    ],
    ("cache", ""): [
        (
            "Redis memory full on {host}",
            "Redis on {host} at maxmemory, evicting keys, hit rate dropped to {pct}%.",
        ),
        (
            "Cache hit ratio dropped",
            "Varnish hit ratio fell from 90% to {pct}% after the deploy at {time}; origin overloaded.",
        ),
        ("[{vendor}] RedisDown {host}", "redis_up=0 instance={host}:6379 role=master"),
        (
            "Memcached evictions high {host}",
            "{n} evictions/s on memcached {host}; sessions getting logged out.",
        ),
        (
            "CDN serving stale content",
            "The CDN keeps serving the old version of {domain} pages; cache purge needed after the release.",
        ),
        ("redis replication broken", "replica on {host} says master_link_status:down, lag {n}s"),
        (
            "Cache stampede on {host}",
            "When the cache key expired every app server hit the database at once; {host} CPU and DB connections maxed.",
        ),
        (
            "Application cache corrupted",
            "Users see other users' cached pages from {host}; flush of the app cache and root cause needed.",
        ),
    ],
}

TYPO_RATE = 0.04  # per word: one adjacent swap, a dropped or a doubled letter
TERSE_RATE = 0.12  # the description left empty: a title is all some tools send


def _slot_values(rng: random.Random) -> dict[str, str]:
    """One incident's host, numbers and names: its title and description agree on them."""
    pct = rng.randint(86, 99)
    return {
        "host": rng.choice(HOSTS),
        "mount": rng.choice(MOUNTS),
        "log": rng.choice(LOGS),
        "temp": rng.choice(TEMPS),
        "svc": rng.choice(SERVICES),
        "proc": rng.choice(PROCESSES),
        "domain": rng.choice(DOMAINS),
        "resolver": rng.choice(RESOLVERS),
        "port": rng.choice(PORTS),
        "user": rng.choice(USERS),
        "team": rng.choice(TEAMS),
        "vendor": rng.choice(VENDORS),
        "pct": str(pct),
        "free": str(100 - pct),
        "gb": str(rng.randint(2, 180)),
        "gb2": str(rng.randint(1, 40)),
        "mb": str(rng.randint(900, 31000)),
        "ms": str(rng.choice([180, 250, 420, 800, 1500, 3000, 5000])),
        "n": str(rng.randint(40, 25000)),
        "pid": str(rng.randint(300, 65000)),
        "load": f"{rng.uniform(8, 64):.1f}",
        "hours": str(rng.randint(3, 96)),
        "time": f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}",
        "ip": f"{rng.choice([45, 77, 89, 103, 185, 203])}.{rng.randint(1, 254)}."
        f"{rng.randint(1, 254)}.{rng.randint(1, 254)}",
        "cidr": f"10.{rng.randint(0, 40)}.{rng.randint(0, 255)}.0/24",
        "ticket": f"CHG{rng.randint(10000, 99999)}",
    }


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 4 or not word.isalpha():
        return word
    i = rng.randrange(1, len(word) - 2)
    kind = rng.randrange(3)
    if kind == 0:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind == 1:
        return word[:i] + word[i + 1 :]
    return word[:i] + word[i] + word[i:]


def _roughen(text: str, rng: random.Random) -> str:
    words = text.split(" ")
    return " ".join(_typo(w, rng) if rng.random() < TYPO_RATE else w for w in words)


def _boilerplate(title: str, description: str, rng: random.Random) -> tuple[str, str]:
    """What ITSM tools and mail clients wrap around a ticket's words."""
    roll = rng.random()
    if roll < 0.15:
        title = f"INC{rng.randint(1000000, 9999999)} - {title}"
    elif roll < 0.25:
        title = f"[P{rng.randint(1, 4)}] {title}"
    elif roll < 0.32:
        title = f"RE: FW: {title}"
    roll = rng.random()
    if description and roll < 0.15:
        description += (
            f"\n\n-- \nThis ticket was created automatically by {rng.choice(VENDORS)}. "
            "Do not reply to this message."
        )
    elif description and roll < 0.25:
        description = (
            f"Reported by: {rng.choice(USERS)}\nAssignment group: {rng.choice(TEAMS)}-ops\n"
            f"Impact: {rng.randint(1, 3)} Urgency: {rng.randint(1, 3)}\n\n{description}"
        )
    elif description and roll < 0.3:
        description += "\n\nSent from my iPhone"
    return title, description


def _case(text: str, rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.08:
        return text.upper()
    if roll < 0.2:
        return text.lower()
    return text


def generate_incident(category: str, runbook: str, rng: random.Random) -> Incident:
    number = rng.randrange(len(TEMPLATES[(category, runbook)]))
    title_template, description_template = TEMPLATES[(category, runbook)][number]
    values = _slot_values(rng)
    title = _case(_roughen(title_template.format(**values), rng), rng)
    description = "" if rng.random() < TERSE_RATE else description_template.format(**values)
    description = _roughen(description, rng)
    title, description = _boilerplate(title, description, rng)
    # Some people type tickets with stray whitespace and punctuation.
    if rng.random() < 0.1:
        title = title.rstrip(string.punctuation) + rng.choice(["!!", " ??", "...", " asap"])
    return Incident(
        title=title,
        description=description,
        category=category,
        runbook=runbook,
        phrasing=f"{category}:{runbook}#{number}",
    )


def generate_corpus(
    seed: int = CORPUS_SEED, rows_per_label: int = ROWS_PER_LABEL
) -> list[Incident]:
    """`rows_per_label` incidents for every label in TEMPLATES, in a fixed order."""
    rng = random.Random(seed)
    return [
        generate_incident(category, runbook, rng)
        for category, runbook in TEMPLATES
        for _ in range(rows_per_label)
    ]


def load_corpus(path: Path = CORPUS_PATH) -> list[Incident]:
    """The shipped corpus."""
    with path.open(encoding="utf-8") as handle:
        return [Incident(**json.loads(line)) for line in handle if line.strip()]


def corpus_lines(incidents: list[Incident]) -> Iterator[str]:
    for incident in incidents:
        yield json.dumps(asdict(incident), ensure_ascii=False, sort_keys=True) + "\n"


def write_corpus(path: Path = CORPUS_PATH, seed: int = CORPUS_SEED) -> int:
    incidents = generate_corpus(seed)
    path.write_text("".join(corpus_lines(incidents)), encoding="utf-8")
    return len(incidents)


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else CORPUS_PATH
    print(f"wrote {write_corpus(target)} incidents to {target}")
