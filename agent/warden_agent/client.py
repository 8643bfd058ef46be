"""Talking to Warden's agent API: one JSON request at a time, errors sorted by what to do."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from warden_agent import __version__

USER_AGENT = f"warden-agent/{__version__}"


class ApiError(Exception):
    """The server refused a request (a 4xx other than 401/403): retrying cannot help."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class Unavailable(Exception):
    """Unreachable, or not ready (5xx, 429): keep the data and try again later."""


class Misconfigured(Exception):
    """401/403: a wrong key or host name. The agent stops rather than hammer the server."""


def error_from(exc: urllib.error.HTTPError) -> ApiError:
    """Read Warden's {"error": {"code", "message"}} body, or make do without it."""
    try:
        error = json.loads(exc.read())["error"]
        return ApiError(exc.code, str(error["code"]), str(error["message"]))
    except (OSError, ValueError, KeyError, TypeError):
        return ApiError(exc.code, f"http_{exc.code}", str(exc.reason))


def reason(exc: BaseException) -> str:
    """The short why of a network error (urllib wraps the socket error in URLError)."""
    inner = getattr(exc, "reason", None)
    return str(inner) if inner is not None else (str(exc) or type(exc).__name__)


def check_url(url: str) -> str:
    """The base URL without a trailing slash; ValueError unless it is http(s)://host[:port]."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"the server URL must be http(s)://host[:port], got {url!r}")
    return url.rstrip("/")


class Client:
    """Warden's API as one host's agent sees it: its base URL and its key."""

    def __init__(self, url: str, key: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self.timeout = timeout

    def call(
        self, method: str, path: str, payload: Any = None, timeout: float | None = None
    ) -> Any:
        """One JSON request; raises ApiError, Unavailable or Misconfigured."""
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {self.key}",
                "Accept": "application/json",
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:
                raw = response.read()
            return json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            error = error_from(exc)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            # ValueError: a 2xx that is not JSON, e.g. a proxy's page: not Warden (yet).
            raise Unavailable(f"{method} {path}: {reason(exc)}") from exc
        if error.status in (401, 403):
            raise Misconfigured(f"{method} {path} refused: {error.message} (HTTP {error.status})")
        if error.status >= 500 or error.status == 429:
            raise Unavailable(f"{method} {path}: {error}")
        raise error
