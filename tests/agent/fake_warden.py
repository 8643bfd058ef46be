"""A tiny stand-in for Warden's agent API (http.server on 127.0.0.1), no Django.

It answers like the real endpoints (metrics, the allow-list, the actions long poll and
result reports) and records every request it gets.
"""

import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

KEY = "test-key-web-01"


def error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "fields": {}}}


class FakeWarden:
    """Answers like Warden's agent API and records every request it gets."""

    def __init__(self, listen: bool = True, keys: tuple[str, ...] = (KEY,)) -> None:
        self.keys = {f"Bearer {key}" for key in keys}
        self.host = "web-01"  # the host the keys belong to
        self.requests: list[dict[str, Any]] = []
        self.actions: list[dict[str, Any]] = []
        self.metrics_status = 201
        self.result_status = 200
        self.started_status = 200  # 409: the claim was offered again or cancelled; 503: busy
        self.lose_started_answers = 0  # starts taken whose answer is lost (connection closed)
        # While set, a post of metrics is taken and never answered (a server that hangs);
        # such posts are not recorded as received.
        self.hang_metrics = threading.Event()
        self.allowlist_status = 200  # 404: a server older than the allow-list
        self.held: dict[str, Any] = {"entries": {}, "digest": ""}
        self.changed = threading.Condition()
        self.hung: list[Any] = []  # bodies of posts taken and never answered
        self.closing = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.answer(self)

            def do_POST(self) -> None:
                fake.answer(self)

            def do_PUT(self) -> None:
                fake.answer(self)

            def log_message(self, *args: Any) -> None:
                pass

        # Bound now (the port is ours), listening only from start(): until then the agent
        # sees "connection refused", as with a server that is down.
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
        self.server.server_bind()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread: threading.Thread | None = None
        if listen:
            self.start()

    def start(self) -> None:
        self.server.server_activate()
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.closing.set()
        if self.thread:
            self.server.shutdown()
        self.server.server_close()

    def give(self, *actions: dict[str, Any]) -> None:
        with self.changed:
            self.actions.extend(actions)
            self.changed.notify_all()

    def made(self, method: str, path_prefix: str) -> list[dict[str, Any]]:
        with self.changed:
            return [
                r
                for r in self.requests
                if r["method"] == method and r["path"].startswith(path_prefix)
            ]

    def samples(self) -> list[dict[str, Any]]:
        """Every sample posted to the metrics API, in the order they came."""
        bodies = [r["body"] for r in self.made("POST", "/api/v1/metrics")]
        return [s for body in bodies for s in (body if isinstance(body, list) else [body])]

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        url = urllib.parse.urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = json.loads(handler.rfile.read(length)) if length else None
        if url.path == "/api/v1/metrics" and self.hang_metrics.is_set():
            self.hung.append(body)
            while self.hang_metrics.is_set() and not self.closing.is_set():
                time.sleep(0.02)
            return  # never answered: the client gave up long ago
        with self.changed:
            self.requests.append(
                {
                    "method": handler.command,
                    "path": url.path,
                    "query": urllib.parse.parse_qs(url.query),
                    "auth": handler.headers.get("Authorization"),
                    "body": body,
                }
            )
        if handler.headers.get("Authorization") not in self.keys:
            return self.send(handler, 401, error("authentication_failed", "Unknown API key."))
        route = (handler.command, url.path)
        if route == ("POST", "/api/v1/metrics"):
            return self.metrics(handler, body)
        if url.path == "/api/v1/agent/allowlist" and handler.command in ("GET", "PUT"):
            return self.allowlist(handler, body)
        if route == ("GET", "/api/v1/agent/actions"):
            wait = float(urllib.parse.parse_qs(url.query)["wait"][0])
            with self.changed:
                self.changed.wait_for(lambda: self.actions, timeout=wait)
                actions, self.actions = self.actions, []
            return self.send(handler, 200, {"actions": actions})
        if handler.command == "POST" and url.path.endswith("/result"):
            return self.result(handler, url.path)
        if handler.command == "POST" and url.path.endswith("/started"):
            return self.started(handler, url.path)
        return self.send(handler, 404, error("not_found", "Not found."))

    def allowlist(self, handler: BaseHTTPRequestHandler, body: Any) -> None:
        if self.allowlist_status == 404:
            return self.send(handler, 404, error("not_found", "Not found."))
        if self.allowlist_status == 503:
            return self.send(handler, 503, error("unavailable", "Starting up."))
        if handler.command == "PUT":
            self.held = {"entries": body["entries"], "digest": body["digest"]}
        answer = {"host": self.host, **self.held, "reported_at": "2030-01-01T00:00:00+00:00"}
        return self.send(handler, 200, answer)

    def result(self, handler: BaseHTTPRequestHandler, path: str) -> None:
        if self.result_status == 409:
            return self.send(handler, 409, error("stale_token", "A newer claim exists."))
        if self.result_status == 503:
            return self.send(handler, 503, error("unavailable", "Database down."))
        execution_id = int(path.split("/")[-2])
        return self.send(handler, 200, {"execution_id": execution_id, "state": "succeeded"})

    def started(self, handler: BaseHTTPRequestHandler, path: str) -> None:
        if self.lose_started_answers:
            self.lose_started_answers -= 1
            handler.close_connection = True
            return  # taken, answer lost: the agent sees the connection close
        if self.started_status == 409:
            return self.send(handler, 409, error("not_claimed", "Offered again: do not start."))
        if self.started_status == 503:
            return self.send(handler, 503, error("unavailable", "Database down."))
        execution_id = int(path.split("/")[-2])
        answer = {
            "execution_id": execution_id,
            "state": "running",
            "lease_expires_at": "2030-01-01T00:00:00+00:00",
            "lease_seconds": 120,
        }
        return self.send(handler, 200, answer)

    def metrics(self, handler: BaseHTTPRequestHandler, body: Any) -> None:
        if self.metrics_status == 400:
            return self.send(handler, 400, error("invalid", "disk_usage: too big"))
        if self.metrics_status == 503:
            return self.send(handler, 503, error("model_unavailable", "No approved model."))
        samples = body if isinstance(body, list) else [body]
        results = [
            {
                "taken_at": sample["taken_at"],
                "severity": "AUTO_HEAL" if sample["disk_usage"] > 90 else "NO_ACTION",
                "confidence": 0.9,
                "category": "disk" if sample["disk_usage"] > 90 else None,
                "decision": "AUTO_HEAL" if sample["disk_usage"] > 90 else "NO_ACTION",
                "ticket_id": "INC-000004" if sample["disk_usage"] > 90 else None,
                "explanation": [],
            }
            for sample in samples
        ]
        self.send(handler, 201, {"host": samples[0]["host"], "results": results})

    def send(self, handler: BaseHTTPRequestHandler, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
