"""The agent's settings: a TOML file (/etc/warden-agent/agent.toml), then command-line flags.

Every key is optional in the file; `url` and `host` must come from the file or a flag.
The key comes from `key_file` (a file only root may read) or, when no key file is set,
the environment variable WARDEN_AGENT_KEY.
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from warden_agent.client import check_url
from warden_agent.executor import KEY_ENV
from warden_agent.metrics import DEFAULT_FLAG_FILE
from warden_agent.spool import DEFAULT_LIMIT, DEFAULT_SPOOL_DIR

DEFAULT_CONFIG = "/etc/warden-agent/agent.toml"
DEFAULT_ALLOWLIST = "/etc/warden-agent/allowlist.json"


class ConfigError(ValueError):
    """A setting that cannot be used; the message is one line naming it."""


@dataclass(frozen=True)
class Settings:
    url: str = ""
    host: str = ""
    key_file: str = ""
    allowlist: str = DEFAULT_ALLOWLIST
    interval: float = 5.0
    post_every: float | None = None  # None: post each reading at once
    poll_wait: float = 50.0
    action_timeout: float = 60.0
    request_timeout: float = 10.0
    spool_dir: str = DEFAULT_SPOOL_DIR
    spool_limit: int = DEFAULT_LIMIT
    disk_path: str = "/"
    dns_name: str = "localhost"
    firewall_flag: str = DEFAULT_FLAG_FILE


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if 0 < value < float("inf") else None


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if value > 0 else None


# Each key: how to check and convert its value, and what it must be (for the error).
_KINDS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "text": (_text, "a non-empty string"),
    "seconds": (_seconds, "a positive number of seconds"),
    "count": (_count, "a positive whole number"),
}
KEYS: Mapping[str, str] = {
    "url": "text",
    "host": "text",
    "key_file": "text",
    "allowlist": "text",
    "interval": "seconds",
    "post_every": "seconds",
    "poll_wait": "seconds",
    "action_timeout": "seconds",
    "request_timeout": "seconds",
    "spool_dir": "text",
    "spool_limit": "count",
    "disk_path": "text",
    "dns_name": "text",
    "firewall_flag": "text",
}


def parse_value(key: str, value: Any, source: str) -> Any:
    """`value` checked for `key`; ConfigError naming the key, what it must be, and `source`."""
    if key not in KEYS:
        raise ConfigError(f"{source}: unknown key {key!r} (known: {', '.join(KEYS)})")
    convert, wanted = _KINDS[KEYS[key]]
    converted = convert(value)
    if converted is None:
        raise ConfigError(f"{source}: {key} must be {wanted}, got {value!r}")
    return converted


def read_config(path: str | Path) -> dict[str, Any]:
    """The checked settings of a TOML file; ConfigError with one line for any fault."""
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config {path} is not UTF-8 text: {exc.reason}") from exc
    return {key: parse_value(key, value, f"config {path}") for key, value in data.items()}


def load_settings(
    config: str | None, overrides: Mapping[str, Any], *, need_server: bool = True
) -> Settings:
    """The file's settings (the default file only if it exists), then `overrides` (flags
    that were given). ConfigError for a bad file, key, value, or a missing url or host."""
    values: dict[str, Any] = {}
    if config is not None or Path(DEFAULT_CONFIG).exists():
        values.update(read_config(config or DEFAULT_CONFIG))
    values.update({key: value for key, value in overrides.items() if value is not None})
    settings = replace(Settings(), **values)
    source = config or DEFAULT_CONFIG
    if need_server:
        for key in ("url", "host"):
            if not getattr(settings, key):
                raise ConfigError(f"no {key}: set {key} in {source} or pass --{key}")
    if settings.url:
        try:
            settings = replace(settings, url=check_url(settings.url))
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
    return settings


def read_key(settings: Settings, environ: Mapping[str, str] | None = None) -> str:
    """The host's API key from `key_file`, else from WARDEN_AGENT_KEY; ConfigError if none,
    or if the key file may be read by anyone but its owner."""
    environ = os.environ if environ is None else environ
    if not settings.key_file:
        key = environ.get(KEY_ENV, "").strip()
        if not key:
            raise ConfigError(f"no API key: set key_file in the config or {KEY_ENV}")
        return key
    path = settings.key_file
    try:
        mode = os.stat(path).st_mode
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            raise ConfigError(
                f"key file {path} is readable by group or others "
                f"(mode {stat.S_IMODE(mode):04o}); run: chmod 600 {path}"
            )
        key = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read key file {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"key file {path} is not UTF-8 text: {exc.reason}") from exc
    if not key or len(key.split()) != 1:
        raise ConfigError(f"key file {path} must hold the key alone, on one line")
    return key
