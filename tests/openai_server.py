"""A scripted OpenAI chat-completions (and Anthropic Messages, Gemini generateContent) server on loopback:
per-item fault scripts in, recorded requests out."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


@dataclass(frozen=True)
class Answer:
    """A 200 completion: `content` (None: the item's correct answer), sent after `delay_s` and, with a
    `gate`, only once the test sets it (or the server stops); with `bytes_per_s`, the body trickled at
    that rate after the headers, or with `trickle_headers` the whole answer from its status line."""

    content: str | None = None
    delay_s: float = 0.0
    gate: threading.Event | None = None
    bytes_per_s: float | None = None
    trickle_headers: bool = False


@dataclass(frozen=True)
class Fail:
    """An HTTP error status, optionally with Retry-After, and a body (`{key}` is replaced by the value of the
    credential header sent: Authorization, x-api-key or x-goog-api-key)."""

    status: int
    retry_after: str | None = None
    body: str = '{"error": {"message": "scripted failure"}}'


@dataclass(frozen=True)
class Hang:
    """Say nothing for `seconds` (past the client's timeout), then drop the connection."""

    seconds: float


@dataclass(frozen=True)
class Blocked:
    """A 200 (billed) that carries no answer text, as a provider answers a prompt it refuses: OpenAI content
    null, Anthropic no text block, Gemini no candidates but a promptFeedback.blockReason."""


Action = Answer | Fail | Hang | Blocked


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
    provider: str = "openai"  # which protocol the request spoke: openai, anthropic or gemini
    path: str = "/v1/chat/completions"  # as sent, query string included
    headers: dict[str, str] = field(default_factory=dict)  # names lower-cased


def correct_answer(item: str) -> str:
    return json.dumps({"verdict": "faithful", "item": item})


def last_user_message(body: Mapping[str, Any]) -> str:
    return next(message["content"] for message in reversed(body["messages"]) if message["role"] == "user")


def _text_of(content: str | Sequence[Mapping[str, Any]]) -> str:
    """An Anthropic message content: a string, or blocks whose text blocks are joined."""
    if isinstance(content, str):
        return content
    return "".join(block["text"] for block in content if block.get("type") == "text")


def last_anthropic_user_message(body: Mapping[str, Any]) -> str:
    return next(_text_of(message["content"]) for message in reversed(body["messages"]) if message["role"] == "user")


def last_gemini_user_content(body: Mapping[str, Any]) -> str:
    # A content without a role is the user's, as Gemini reads it.
    user = next(content for content in reversed(body["contents"]) if content.get("role", "user") == "user")
    return "".join(part.get("text", "") for part in user["parts"])


_GEMINI_PATH = re.compile(r"^/v1beta/models/(?P<model>[^/:?]+):generateContent$")


def _provider_of(path: str) -> str | None:
    if path == "/v1/chat/completions":
        return "openai"
    if path == "/v1/messages":
        return "anthropic"
    return "gemini" if _GEMINI_PATH.match(path) else None


def _google_error(code: int, status: str, message: str, reason: str | None = None) -> str:
    details = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason}] if reason else []
    return json.dumps({"error": {"code": code, "message": message, "status": status, "details": details}})


def _anthropic_error(kind: str, message: str) -> str:
    return json.dumps({"type": "error", "error": {"type": kind, "message": message}})


class OpenAIServer:
    """POST /v1/chat/completions on 127.0.0.1 (a free port), answering the n-th request for an item with
    `script[item][n]` (past the end of the script: the correct answer). The item is the last user message.

    Every request is recorded in `received`; `max_in_flight` is the most requests handled at once.
    A request whose Authorization header is not `Bearer <api_key>` gets 401.

    The same port also speaks Anthropic (POST /v1/messages: x-api-key and anthropic-version, else 401/400)
    and Gemini (POST /v1beta/models/<model>:generateContent: x-goog-api-key, else 403 when missing and
    400 API_KEY_INVALID when wrong, as Google answers), each in its own request and answer shapes.
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
        return self.origin + "/v1"

    @property
    def origin(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def base_url_for(self, provider: str) -> str:
        """The Endpoint.base_url for `provider`: OpenAI-compatible bases end in /v1, the others are the root."""
        return self.base_url if provider == "openai" else self.origin

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def requests_for(self, item: str) -> list[Received]:
        with self._lock:
            return [request for request in self.received if request.item == item]

    def completions(self, item: str) -> int:
        """How many 200 completions the item was given (what a provider would bill)."""
        return sum(request.status == 200 for request in self.requests_for(item))

    def _admit(
        self, item: str, authorized: bool, body: dict[str, Any], provider: str, path: str, headers: dict[str, str]
    ) -> Received:
        """Record the request and pick its scripted action, atomically."""
        with self._lock:
            attempt = sum(request.item == item for request in self.received)
            actions = self.script.get(item, [])
            action = actions[attempt] if attempt < len(actions) else self.default
            record = Received(
                item,
                attempt,
                action,
                None,
                authorized,
                body,
                time.monotonic(),
                provider=provider,
                path=path,
                headers=headers,
            )
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

            def _send(
                self,
                status: int,
                payload: str,
                headers: Mapping[str, str] | None = None,
                bytes_per_s: float | None = None,
                trickle_headers: bool = False,
            ) -> None:
                data = payload.encode("utf-8")
                fields = {"Content-Type": "application/json", "Content-Length": str(len(data)), **(headers or {})}
                if trickle_headers:
                    head = f"HTTP/1.1 {status} OK\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n"
                    data = head.encode("latin-1") + data
                else:
                    self.send_response(status)
                    for name, value in fields.items():
                        self.send_header(name, value)
                    self.end_headers()
                if bytes_per_s is None:
                    self.wfile.write(data)
                    return
                self.wfile.flush()
                for byte in data:
                    if server._stopping.wait(1 / bytes_per_s):
                        return
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()

            def do_POST(self) -> None:
                provider = _provider_of(self.path)
                if provider is None:
                    self._send(404, '{"error": {"message": "not found"}}')
                    return
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                headers = {name.lower(): value for name, value in self.headers.items()}
                if provider == "openai":
                    item = last_user_message(body)
                    credential = headers.get("authorization", "")
                    rejection = None if credential == f"Bearer {server.api_key}" else self._openai_unauthorized()
                elif provider == "anthropic":
                    item = last_anthropic_user_message(body)
                    credential = headers.get("x-api-key", "")
                    rejection = self._anthropic_unauthorized(credential, headers)
                else:
                    item = last_gemini_user_content(body)
                    credential = headers.get("x-goog-api-key", "")
                    rejection = self._gemini_unauthorized(credential)
                record = server._admit(item, rejection is None, body, provider, self.path, headers)
                try:
                    record.status = self._act(item, record.action, rejection, credential, provider, body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up first; the request is still recorded
                finally:
                    record.finished = time.monotonic()
                    with server._lock:
                        server.in_flight -= 1

            def _openai_unauthorized(self) -> tuple[int, str]:
                return 401, '{"error": {"message": "Incorrect API key provided"}}'

            def _anthropic_unauthorized(self, credential: str, headers: Mapping[str, str]) -> tuple[int, str] | None:
                if credential != server.api_key:
                    return 401, _anthropic_error("authentication_error", "invalid x-api-key")
                if "anthropic-version" not in headers:
                    return 400, _anthropic_error("invalid_request_error", "anthropic-version: header is required")
                return None

            def _gemini_unauthorized(self, credential: str) -> tuple[int, str] | None:
                if not credential:
                    message = "Method doesn't allow unregistered callers. Please use an API key."
                    return 403, _google_error(403, "PERMISSION_DENIED", message)
                if credential != server.api_key:
                    message = "API key not valid. Please pass a valid API key."
                    return 400, _google_error(400, "INVALID_ARGUMENT", message, "API_KEY_INVALID")
                return None

            def _act(
                self,
                item: str,
                action: Action,
                rejection: tuple[int, str] | None,
                credential: str,
                provider: str,
                body: dict[str, Any],
            ) -> int | None:
                if rejection is not None:
                    self._send(*rejection)
                    return rejection[0]
                if isinstance(action, Hang):
                    server._stopping.wait(action.seconds)
                    self.close_connection = True
                    return None
                if isinstance(action, Fail):
                    headers = {"Retry-After": action.retry_after} if action.retry_after is not None else {}
                    self._send(action.status, action.body.replace("{key}", credential), headers)
                    return action.status
                if isinstance(action, Answer) and action.delay_s:
                    server._stopping.wait(action.delay_s)
                if isinstance(action, Answer) and action.gate is not None:
                    while not (action.gate.wait(0.05) or server._stopping.is_set()):
                        pass
                if isinstance(action, Blocked):
                    content = None
                else:
                    content = server.answer(item) if action.content is None else action.content
                if provider == "anthropic":
                    payload = self._anthropic_message(item, content, body)
                elif provider == "gemini":
                    payload = self._gemini_response(content)
                else:
                    payload = self._openai_completion(item, content, body)
                trickle = action.bytes_per_s if isinstance(action, Answer) else None
                whole = isinstance(action, Answer) and action.trickle_headers
                self._send(200, json.dumps(payload), bytes_per_s=trickle, trickle_headers=whole)
                return 200

            def _openai_completion(self, item: str, content: str | None, body: dict[str, Any]) -> dict[str, Any]:
                return {
                    "id": f"chatcmpl-{item}",
                    "object": "chat.completion",
                    "model": body.get("model"),
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content},
                            "finish_reason": "stop" if content is not None else "content_filter",
                        }
                    ],
                    "usage": (
                        {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
                        if content is not None
                        else {"prompt_tokens": 10, "completion_tokens": 0, "total_tokens": 10}
                    ),
                }

            def _anthropic_message(self, item: str, content: str | None, body: dict[str, Any]) -> dict[str, Any]:
                return {
                    "id": f"msg_{item}",
                    "type": "message",
                    "role": "assistant",
                    "model": body.get("model"),
                    "content": [{"type": "text", "text": content}] if content is not None else [],
                    "stop_reason": "end_turn" if content is not None else "refusal",
                    "stop_sequence": None,
                    "usage": {"input_tokens": 10, "output_tokens": 5 if content is not None else 0},
                }

            def _gemini_response(self, content: str | None) -> dict[str, Any]:
                if content is None:
                    return {
                        "promptFeedback": {"blockReason": "SAFETY"},
                        "usageMetadata": {"promptTokenCount": 10, "totalTokenCount": 10},
                    }
                model = _GEMINI_PATH.match(self.path)
                return {
                    "candidates": [
                        {"content": {"role": "model", "parts": [{"text": content}]}, "finishReason": "STOP", "index": 0}
                    ],
                    "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15},
                    "modelVersion": model.group("model") if model else None,
                }

        return Handler
