"""Argv templates and digests: what the server decides and the agent agrees to run.

A runbook's action is an exact argv. An allow-list maps an action name to an argv
template whose elements are literal strings or a whole-element typed placeholder
`{name:type}`, e.g. `["warden-runbook", "nft-block", "--address", "{address:ip}"]`.

    ip    an IPv4/IPv6 address or network, as Python's ipaddress reads it
    port  a decimal port, 1..65535
    unit  a systemd unit name (app.service, backup.timer, ...)
    word  letters, digits and . _ - (not first), up to 128 characters

A filled value never starts with "-", so it cannot turn into an option. The server
fills a template (`fill`), binds approvals to `argv_digest` of the result, and the
agent runs the argv it receives only if `mismatch(template, argv)` is None.

Only the standard library: the server imports this module too.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Callable, Mapping, Sequence

__all__ = [
    "TYPES",
    "ArgvError",
    "allowlist_digest",
    "argv_digest",
    "fill",
    "mismatch",
    "placeholders",
]

_UNIT = re.compile(r"[A-Za-z0-9][A-Za-z0-9@._:-]{0,250}\.(service|socket|timer|target|mount|slice)")
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_PORT = re.compile(r"[1-9][0-9]{0,4}")
# `{name:type}` filling a whole element. Something that only looks like one ("{address}",
# "{port:number}") is an error rather than a literal, so a typo cannot pass silently.
_PLACEHOLDER = re.compile(r"\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<type>[^{}]*))?\}")
# A value shown in a reason: long enough to recognise, short enough for one line.
_SHOWN = 60


class ArgvError(ValueError):
    """A template or a parameter that cannot make a valid argv; the message says which."""


def _is_ip(value: str) -> bool:
    # A scope ("fe80::1%eth0") is not an address a firewall rule takes.
    if "%" in value:
        return False
    try:
        if "/" in value:
            ipaddress.ip_network(value)  # strict: host bits set is a typo, not a network
        else:
            ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _is_port(value: str) -> bool:
    return _PORT.fullmatch(value) is not None and int(value) <= 65535


TYPES: Mapping[str, Callable[[str], bool]] = {
    "ip": _is_ip,
    "port": _is_port,
    "unit": lambda value: _UNIT.fullmatch(value) is not None,
    "word": lambda value: _WORD.fullmatch(value) is not None,
}


def argv_digest(argv: Sequence[str]) -> str:
    """SHA-256 hex of the argv as compact JSON: what approvals and reports are bound to."""
    text = json.dumps(list(argv), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def allowlist_digest(entries: Mapping[str, Sequence[str]]) -> str:
    """SHA-256 hex of an allow-list as canonical JSON (keys sorted), to compare two copies."""
    plain = {action: list(template) for action, template in entries.items()}
    text = json.dumps(plain, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _placeholder(element: str) -> tuple[str, str] | None:
    """(name, type) if `element` is a placeholder, None if it is a literal."""
    match = _PLACEHOLDER.fullmatch(element)
    if match is None:
        return None
    name, kind = match["name"], match["type"]
    if kind is None:
        raise ArgvError(f"placeholder {element} has no type (write {{{name}:TYPE}})")
    if kind not in TYPES:
        known = ", ".join(TYPES)
        raise ArgvError(f"placeholder {element} has an unknown type {kind!r} (one of: {known})")
    return name, kind


def is_placeholder(element: str) -> bool:
    """Whether `element` is written as a placeholder ({name:type}), not a literal."""
    return _PLACEHOLDER.fullmatch(element) is not None


def placeholders(template: Sequence[str]) -> list[tuple[str, str]]:
    """The (name, type) of each placeholder, in order; ArgvError for an unknown type,
    a placeholder without a type, or a name used twice."""
    found: list[tuple[str, str]] = []
    for element in template:
        placeholder = _placeholder(element)
        if placeholder is None:
            continue
        if any(name == placeholder[0] for name, _ in found):
            raise ArgvError(f"placeholder {{{placeholder[0]}}} appears twice in the template")
        found.append(placeholder)
    return found


def _shown(value: str) -> str:
    text = repr(value)  # escapes newlines: a reason stays one line
    return text if len(text) <= _SHOWN else text[: _SHOWN - 4] + "...'"


def _invalid(name: str, kind: str, value: object) -> str | None:
    """Why `value` cannot fill {name:kind}, or None if it can."""
    if not isinstance(value, str):
        return f"parameter {name} must be a string, got {type(value).__name__}"
    if value.startswith("-"):
        return f"parameter {name} must not start with '-', got {_shown(value)}"
    if not TYPES[kind](value):
        return f"parameter {name} is not a valid {kind}: {_shown(value)}"
    return None


def fill(template: Sequence[str], params: Mapping[str, str]) -> list[str]:
    """The argv `template` makes with `params` (parameters it does not use are ignored);
    ArgvError naming the parameter that is missing or invalid."""
    placeholders(template)  # an invalid template fails whatever the parameters
    argv: list[str] = []
    for element in template:
        placeholder = _placeholder(element)
        if placeholder is None:
            argv.append(element)
            continue
        name, kind = placeholder
        if name not in params:
            raise ArgvError(f"parameter {name} ({kind}) is missing")
        problem = _invalid(name, kind, params[name])
        if problem:
            raise ArgvError(problem)
        argv.append(params[name])
    return argv


def mismatch(template: Sequence[str], argv: Sequence[str]) -> str | None:
    """None when `argv` is one the template allows, else a one-line reason."""
    try:
        placeholders(template)
    except ArgvError as exc:
        return f"the template is invalid: {exc}"
    if (
        isinstance(argv, (str, bytes))
        or not isinstance(argv, Sequence)
        or not all(isinstance(element, str) for element in argv)
    ):
        return "argv must be a list of strings"
    if len(argv) != len(template):
        return f"argv has {len(argv)} elements, the template {len(template)}"
    for position, (expected, actual) in enumerate(zip(template, argv, strict=True)):
        placeholder = _placeholder(expected)
        if placeholder is None:
            if actual != expected:
                return f"argv[{position}] is {_shown(actual)}, the template has {_shown(expected)}"
            continue
        problem = _invalid(*placeholder, actual)
        if problem:
            return f"argv[{position}] does not fill {expected}: {problem}"
    return None
