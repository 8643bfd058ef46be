"""The floor of forbidden commands: what no policy, runbook or approval can allow.

Matched on the parsed command line (shlex), not on substrings: `rm -rf /` is found
however its flags are written, `sudo` and `sh -c '...'` are looked through, and a
cleanup's `rm -rf /var/tmp/cache` or a runbook named "reboot-notes" is not
refused. Policies add their own words (Policy.forbidden_commands); they cannot
take anything away from this list. The engine checks it at decision, approval
checks it before a verdict counts, and the claim checks it before an agent is
handed the action (governance/rules/checks.py, governance/approvals/actions.py,
remediation/executions/claims.py).
"""

import re
import shlex
from collections.abc import Callable, Iterator, Sequence

# Shell operators that end one simple command and start the next.
SEPARATORS = {";", "&&", "||", "&", "|", "\n", "(", ")", "|&"}
PIPE = {"|", "|&"}
# Words in front of a command that run it: looked through to the command itself.
WRAPPERS = {"sudo", "doas", "nohup", "env", "time", "nice", "ionice", "timeout", "exec", "xargs"}
SHELLS = {"sh", "bash", "dash", "zsh", "ksh", "fish", "busybox"}
INTERPRETERS = SHELLS | {"python", "python3", "perl", "ruby", "node", "php"}
DOWNLOADERS = {"curl", "wget", "fetch", "aria2c"}
# Removed recursively, these take the system (or everyone's data) with them.
SYSTEM_PATHS = {
    "/", "/*", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/opt", "/proc",
    "/root", "/sbin", "/srv", "/sys", "/usr", "/var", "/var/lib", "/var/log", "~", "$HOME",
}  # fmt: skip
SECURITY_SERVICES = {
    "firewalld", "ufw", "iptables", "ip6tables", "nftables", "netfilter-persistent",
    "apparmor", "auditd", "selinux", "fail2ban", "clamav-daemon", "falco", "osqueryd",
    "crowdstrike", "falcon-sensor", "wazuh-agent",
}  # fmt: skip
# A mode that lets everyone write: octal ending in 2, 3, 6 or 7, or o/a given w.
OTHERS_WRITE_OCTAL = re.compile(r"[0-7]*[2367]")
OTHERS_WRITE = re.compile(r"(^|,)[ugo]*[oa][ugoa]*[+=][rwxXst]*w")
DATABASE_CLIENTS = {"psql", "mysql", "mariadb", "sqlite3", "redis-cli", "mongo", "mongosh"}
DROP_DATA = re.compile(
    r"\b(drop\s+(database|schema)|truncate\s+table|flushall|flushdb|dropdatabase)\b",
    re.IGNORECASE,
)


def floor_violations(command: str) -> list[str]:
    """Why `command` may never run, one reason per violation; [] when the floor allows it."""
    try:
        tokens = _tokens(command)
    except ValueError:
        return [f"{command!r} cannot be parsed as a command line, so it cannot be checked"]
    reasons: list[str] = []
    pipeline: list[list[str]] = []
    for argv, operator in _simple_commands(tokens):
        argv = _unwrap(argv)
        if not argv:
            continue
        pipeline.append(argv)
        reasons.extend(_argv_violations(argv))
        if operator not in PIPE:
            reasons.extend(_pipeline_violations(pipeline))
            pipeline = []
    reasons.extend(_pipeline_violations(pipeline))
    return list(dict.fromkeys(reasons))


def runbook_refusals(name: str, commands: Sequence[str]) -> list[str]:
    """One line per command of runbook `name` the floor refuses, saying why."""
    return [
        f"Runbook {name} runs {command!r}, which {reason}: no policy allows that, "
        "even with approval."
        for command in commands
        for reason in floor_violations(command)
    ]


def _tokens(command: str) -> list[str]:
    lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|()<>")
    lexer.whitespace_split = True
    lexer.commenters = ""
    return list(lexer)


def _simple_commands(tokens: Sequence[str]) -> Iterator[tuple[list[str], str]]:
    argv: list[str] = []
    for token in tokens:
        if token in SEPARATORS:
            yield argv, token
            argv = []
        else:
            argv.append(token)
    yield argv, ""


def _unwrap(argv: list[str]) -> list[str]:
    """The command a wrapper runs: `sudo -u root rm ...` is `rm ...`."""
    while argv:
        name = _name(argv[0])
        if "=" in argv[0] and not argv[0].startswith("-"):  # VAR=value before a command
            argv = argv[1:]
        elif name in WRAPPERS:
            argv = argv[1:]
            while argv and (argv[0].startswith("-") or "=" in argv[0] or argv[0].isdigit()):
                argv = argv[1:]
        else:
            return argv
    return argv


def _name(word: str) -> str:
    return word.rsplit("/", 1)[-1].lower()


def _argv_violations(argv: list[str]) -> list[str]:
    name, args = _name(argv[0]), argv[1:]
    reasons = [reason for check in CHECKS for reason in check(name, args)]
    # A shell given a script: the script is a command line too.
    if name in SHELLS and "-c" in args[:-1]:
        script = args[args.index("-c") + 1]
        reasons.extend(floor_violations(script))
        if DOWNLOADERS & set(re.findall(r"[\w.-]+", script.lower())) and "$(" in script:
            reasons.append("runs a downloaded script in a shell")
    return reasons


def _pipeline_violations(pipeline: list[list[str]]) -> list[str]:
    """A download piped into a shell or an interpreter runs code nobody reviewed."""
    names = [_name(argv[0]) for argv in pipeline]
    for i, name in enumerate(names):
        if name in DOWNLOADERS and any(later in INTERPRETERS for later in names[i + 1 :]):
            return ["pipes a download into a shell"]
    return []


def _flags(args: Sequence[str]) -> set[str]:
    """Short flags split (-rf is r and f), long flags whole."""
    flags: set[str] = set()
    for arg in args:
        if arg.startswith("--"):
            flags.add(arg)
        elif arg.startswith("-") and len(arg) > 1:
            flags.update(arg[1:])
    return flags


def _operands(args: Sequence[str]) -> list[str]:
    return [arg for arg in args if not arg.startswith("-")]


def _destroys_files(name: str, args: list[str]) -> list[str]:
    if name == "rm":
        flags = _flags(args)
        recursive = flags & {"r", "R", "--recursive"}
        targets = [target.rstrip("/") or "/" for target in _operands(args)]
        if "--no-preserve-root" in flags or (
            recursive and any(target in SYSTEM_PATHS for target in targets)
        ):
            return ["recursively removes the system's files"]
    if name in {"shred", "wipefs"} or name.startswith("mkfs"):
        return ["destroys a filesystem or device"]
    if name in {"fdisk", "sfdisk", "parted", "sgdisk"} and not {"l", "--list"} & _flags(args):
        return ["rewrites a disk's partitions"]
    if name == "dd" and any(arg.startswith("of=/dev/") for arg in args):
        return ["writes over a device"]
    if name in {"find"} and "-delete" in args and any(a in SYSTEM_PATHS for a in args):
        return ["recursively removes the system's files"]
    return []


def _destroys_data(name: str, args: list[str]) -> list[str]:
    if name in {"dropdb", "dropuser"}:
        return ["destroys a database"]
    if name == "mysqladmin" and "drop" in [arg.lower() for arg in args]:
        return ["destroys a database"]
    if name in DATABASE_CLIENTS and any(DROP_DATA.search(arg) for arg in args):
        return ["destroys a database"]
    return []


def _disables_protection(name: str, args: list[str]) -> list[str]:
    lowered = [arg.lower() for arg in args]
    if name == "ufw" and lowered[:1] in (["disable"], ["reset"]):
        return ["disables the firewall"]
    if name in {"iptables", "ip6tables"} and (
        _flags(args) & {"F", "X", "--flush", "--delete-chain"}
        or ("-P" in args and "accept" in lowered)
        or ("--policy" in args and "accept" in lowered)
    ):
        return ["flushes the firewall"]
    if name == "nft" and "flush" in lowered:
        return ["flushes the firewall"]
    if name in {"setenforce"} and lowered[:1] in (["0"], ["permissive"]):
        return ["disables a security tool"]
    if name in {"aa-teardown", "auditctl"} and (name == "aa-teardown" or "-D" in args):
        return ["disables a security tool"]
    stopping = {"stop", "disable", "mask", "kill"} & set(lowered)
    units = {arg.removesuffix(".service") for arg in lowered}
    if name == "systemctl" and stopping and units & SECURITY_SERVICES:
        return ["stops a firewall or security tool"]
    if name == "service" and lowered[:1] and lowered[0] in SECURITY_SERVICES and "stop" in lowered:
        return ["stops a firewall or security tool"]
    return []


def _stops_host(name: str, args: list[str]) -> list[str]:
    if name in {"shutdown", "reboot", "poweroff", "halt"}:
        return ["shuts down or reboots the host"]
    if name in {"init", "telinit"} and args[:1] in (["0"], ["6"]):
        return ["shuts down or reboots the host"]
    if name == "systemctl" and {"poweroff", "reboot", "halt", "kexec"} & set(args):
        return ["shuts down or reboots the host"]
    return []


def _weakens_access(name: str, args: list[str]) -> list[str]:
    if name in {"userdel", "deluser", "groupdel", "delgroup"}:
        return ["removes users"]
    if name == "chmod":
        modes = _operands(args)[:1]
        if modes and (OTHERS_WRITE_OCTAL.fullmatch(modes[0]) or OTHERS_WRITE.search(modes[0])):
            return ["opens permissions to everyone"]
    targets = {(target.rstrip("/") or "/") for target in _operands(args)[1:]}
    if name == "chown" and _flags(args) & {"R", "--recursive"} and targets & SYSTEM_PATHS:
        return ["takes over the system's files"]
    if name == "passwd" and {"d", "--delete"} & _flags(args):
        return ["removes a password"]
    return []


CHECKS: tuple[Callable[[str, list[str]], list[str]], ...] = (
    _destroys_files,
    _destroys_data,
    _disables_protection,
    _stops_host,
    _weakens_access,
)
