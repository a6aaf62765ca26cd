"""A scripted OpenAI chat-completions server on loopback: per-item fault scripts in, recorded requests out."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Answer:
    """A 200 completion: `content` (None: the item's correct answer), sent after `delay_s`."""

    content: str | None = None
    delay_s: float = 0.0


@dataclass(frozen=True)
class Fail:
    """An HTTP error status, optionally with Retry-After, and a body (`{key}` is replaced by the bearer token sent)."""

    status: int
    retry_after: str | None = None
    body: str = '{"error": {"message": "scripted failure"}}'


@dataclass(frozen=True)
class Hang:
    """Say nothing for `seconds` (past the client's timeout), then drop the connection."""

    seconds: float


Action = Answer | Fail | Hang


@dataclass
class Received:
    item: str
    attempt: int  # 0-based: how many requests for this item came before this one
    action: Action
    status: int | None  # None: no HTTP answer (hang)
    authorized: bool
    body: dict[str, Any]
    started: float
    finished: float = 0.0


def correct_answer(item: str) -> str:
    return json.dumps({"verdict": "faithful", "item": item})


def last_user_message(body: Mapping[str, Any]) -> str:
    return next(message["content"] for message in reversed(body["messages"]) if message["role"] == "user")


class OpenAIServer:
    """POST /v1/chat/completions on 127.0.0.1 (a free port), answering the n-th request for an item with
    `script[item][n]` (past the end of the script: the correct answer). The item is the last user message.

    Every request is recorded in `received`; `max_in_flight` is the most requests handled at once.
    A request whose Authorization header is not `Bearer <api_key>` gets 401.
    """

    def __init__(
        self,
        api_key: str,
        script: Mapping[str, Sequence[Action]] | None = None,
        *,
        answer: Callable[[str], str] = correct_answer,
        default: Action = Answer(),
    ) -> None:
        self.api_key = api_key
        self.script = {item: list(actions) for item, actions in (script or {}).items()}
        self.answer = answer
        self.default = default
        self.received: list[Received] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="openai-server", daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> OpenAIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def requests_for(self, item: str) -> list[Received]:
        with self._lock:
            return [request for request in self.received if request.item == item]

    def completions(self, item: str) -> int:
        """How many 200 completions the item was given (what a provider would bill)."""
        return sum(request.status == 200 for request in self.requests_for(item))

    def _admit(self, item: str, authorized: bool, body: dict[str, Any]) -> Received:
        """Record the request and pick its scripted action, atomically."""
        with self._lock:
            attempt = sum(request.item == item for request in self.received)
            actions = self.script.get(item, [])
            action = actions[attempt] if attempt < len(actions) else self.default
            record = Received(item, attempt, action, None, authorized, body, time.monotonic())
            self.received.append(record)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return record

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, payload: str, headers: Mapping[str, str] | None = None) -> None:
                data = payload.encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                if self.path != "/v1/chat/completions":
                    self._send(404, '{"error": {"message": "not found"}}')
                    return
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                item = last_user_message(body)
                authorization = self.headers.get("Authorization", "")
                authorized = authorization == f"Bearer {server.api_key}"
                record = server._admit(item, authorized, body)
                try:
                    record.status = self._act(item, record.action, authorized, authorization, body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up first; the request is still recorded
                finally:
                    record.finished = time.monotonic()
                    with server._lock:
                        server.in_flight -= 1

            def _act(
                self, item: str, action: Action, authorized: bool, authorization: str, body: dict[str, Any]
            ) -> int | None:
                if not authorized:
                    self._send(401, '{"error": {"message": "Incorrect API key provided"}}')
                    return 401
                if isinstance(action, Hang):
                    server._stopping.wait(action.seconds)
                    self.close_connection = True
                    return None
                if isinstance(action, Fail):
                    headers = {"Retry-After": action.retry_after} if action.retry_after is not None else {}
                    self._send(action.status, action.body.replace("{key}", authorization), headers)
                    return action.status
                if action.delay_s:
                    server._stopping.wait(action.delay_s)
                content = server.answer(item) if action.content is None else action.content
                payload = {
                    "id": f"chatcmpl-{item}",
                    "object": "chat.completion",
                    "model": body.get("model"),
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                    ],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
                }
                self._send(200, json.dumps(payload))
                return 200

        return Handler
