#!/usr/bin/env python3
"""Report a handed-off job's result to Warden (deploy/handoff/README.md).

POST <callback URL> with the body {"token": N, "ok": true|false, "output": "..."} and the
header X-Warden-Signature: t=<unix time>,v2=<hex HMAC-SHA256 of "<t>.POST.<path>." + body>,
made with the shared secret over the URL's path (/api/v1/executions/<id>/callback: so the
signature names the execution) and the exact bytes sent. The token is the one Warden's
request carried; Warden refuses a report with another (409) or a signature that is wrong,
made for another execution's URL, or too old (401).

    warden_callback.py --url URL --token N --ok true|false [--output TEXT]... \\
        [--output-file PATH|-] [--secret-env WARDEN_HANDOFF_SECRET]

The secret is read from the environment variable --secret-env names, never from the command
line. The same file ships with the AWX playbooks, the Rundeck jobs and the StackStorm pack;
it needs only Python 3.8's standard library.

Exit status: 0 Warden accepted the report; 2 bad input; 3 Warden refused it; 4 Warden could
not be reached (after retries). Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

SIGNATURE_HEADER = "X-Warden-Signature"
OUTPUT_LIMIT = 10_000  # characters Warden keeps; a longer output would be refused
ATTEMPTS = 3
# Rundeck passes a ${data.x} reference it could not fill as written: that is no output.
UNEXPANDED = re.compile(r"^\$\{[^}]*\}$")

BAD_INPUT, REFUSED, UNREACHABLE = 2, 3, 4


class CallbackError(Exception):
    """A report Warden did not take; `status` is the exit status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def job_output(parts: Sequence[str]) -> str:
    """The outputs given, joined, as much of their end as Warden keeps."""
    text = "\n".join(part for part in parts if part and not UNEXPANDED.match(part.strip()))
    return text[-OUTPUT_LIMIT:]


def callback_body(token: int, ok: bool, output: str) -> bytes:
    return json.dumps(
        {"token": token, "ok": ok, "output": output[-OUTPUT_LIMIT:]}, separators=(",", ":")
    ).encode()


def signed_path(url: str) -> str:
    """What of the URL the signature covers beside the method: its path and query."""
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def signature(secret: str, url: str, body: bytes, timestamp: int) -> str:
    signed = f"{timestamp}.POST.{signed_path(url)}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256)
    return f"t={timestamp},v2={digest.hexdigest()}"


def _refusal(error: urllib.error.HTTPError) -> str:
    """Warden's error answer as one line: `HTTP 409 stale_token: ...`."""
    try:
        detail = json.loads(error.read() or b"null")["error"]
        return f"HTTP {error.code} {detail['code']}: {detail['message']}"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {error.code}"


def post_report(
    url: str,
    body: bytes,
    secret: str,
    *,
    timeout: float = 30,
    clock: Callable[[], float] = time.time,
    pause: Callable[[float], None] = time.sleep,
) -> dict:
    """POST the signed body; Warden's answer. Network errors and 5xx are retried, each
    attempt signed anew (the signature has a timestamp); 4xx are final."""
    last = ""
    for attempt in range(1, ATTEMPTS + 1):
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": "Warden hand-off callback",
                SIGNATURE_HEADER: signature(secret, url, body, int(clock())),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            if error.code < 500:
                retried = (
                    " (a retry: the first attempt may have been recorded)" if attempt > 1 else ""
                )
                raise CallbackError(
                    REFUSED, f"Warden refused the report: {_refusal(error)}{retried}"
                ) from error
            last = _refusal(error)
        except (urllib.error.URLError, OSError) as error:
            last = str(getattr(error, "reason", error))
        if attempt < ATTEMPTS:
            pause(2**attempt)
    raise CallbackError(
        UNREACHABLE, f"Warden did not take the report after {ATTEMPTS} tries: {last}"
    )


def report(url: str, token: int, ok: bool, output: str, secret: str, **options: Any) -> dict:
    """Sign and send one report; Warden's answer ({"execution_id", "state"})."""
    if not re.match(r"^https?://", url):
        raise CallbackError(BAD_INPUT, f"the callback URL {url!r} is not http(s)")
    if not secret:
        raise CallbackError(BAD_INPUT, "the shared secret is empty")
    return post_report(url, callback_body(token, ok, output), secret, **options)


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="Warden's callback URL (warden.callback_url)")
    parser.add_argument("--token", required=True, help="the token Warden sent (warden.token)")
    parser.add_argument("--ok", required=True, choices=["true", "false"])
    parser.add_argument("--output", action="append", default=[], help="may be repeated")
    parser.add_argument("--output-file", help="a file whose text is the output; - for stdin")
    parser.add_argument("--secret-env", default="WARDEN_HANDOFF_SECRET")
    parser.add_argument("--timeout", type=float, default=30)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _arguments(argv)
    try:
        if not re.match(r"^[1-9][0-9]*$", arguments.token):
            raise CallbackError(BAD_INPUT, f"--token {arguments.token!r} is not a token")
        secret = os.environ.get(arguments.secret_env, "")
        if not secret:
            raise CallbackError(
                BAD_INPUT, f"{arguments.secret_env} is not set: nothing to sign with"
            )
        parts = list(arguments.output)
        if arguments.output_file == "-":
            parts.append(sys.stdin.read())
        elif arguments.output_file:
            with open(arguments.output_file, encoding="utf-8", errors="replace") as handle:
                parts.append(handle.read())
        answer = report(
            arguments.url,
            int(arguments.token),
            arguments.ok == "true",
            job_output(parts),
            secret,
            timeout=arguments.timeout,
        )
    except CallbackError as error:
        print(f"warden-callback: {error}", file=sys.stderr)
        return error.status
    except OSError as error:
        print(f"warden-callback: {error}", file=sys.stderr)
        return BAD_INPUT
    print(
        f"warden-callback: Warden took the report: execution {answer.get('execution_id')} is "
        f"{answer.get('state')}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
