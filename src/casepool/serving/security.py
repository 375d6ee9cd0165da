"""What guards every request: sessions, CSRF tokens, rate limits, sign-in throttling, body limits,
security headers and the request log (who, what, when; never an answer's values)."""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SESSION_COOKIE = "casepool_session"
SESSION_IDLE_SECONDS = 30 * 60
SESSION_MAX_SECONDS = 8 * 3600
RESULTS_KEPT = 5
MAX_SESSIONS = 10_000  # past this, the longest-idle sessions not signed in are dropped first

# No script at all: the pages are server-rendered and the chart is inline SVG.
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]

log = logging.getLogger("casepool.serve")


@dataclass
class Session:
    """One browser's session: kept in the service's memory only, never in the cookie."""

    sid: str
    csrf: str
    lang: str = "en"
    user: str | None = None
    role: str | None = None
    org: str | None = None
    created: float = field(default_factory=time.monotonic)
    seen: float = field(default_factory=time.monotonic)
    results: OrderedDict[str, Any] = field(default_factory=OrderedDict)

    def keep_result(self, result: Any) -> str:
        rid = secrets.token_urlsafe(12)
        self.results[rid] = result
        while len(self.results) > RESULTS_KEPT:
            self.results.popitem(last=False)
        return rid

    def csrf_ok(self, given: object) -> bool:
        return isinstance(given, str) and hmac.compare_digest(given, self.csrf)


class Sessions:
    """Sessions by random id; they end when idle for 30 minutes, after 8 hours, or at sign-out."""

    def __init__(self) -> None:
        self._by_id: dict[str, Session] = {}
        self._lock = threading.Lock()

    def new(self, lang: str = "en") -> Session:
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), lang)
        with self._lock:
            self._prune()
            if len(self._by_id) >= MAX_SESSIONS:
                idle = sorted(self._by_id.values(), key=lambda s: (s.user is not None, s.seen))
                for stale in idle[: MAX_SESSIONS // 10]:
                    del self._by_id[stale.sid]
            self._by_id[session.sid] = session
        return session

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        now = time.monotonic()
        with self._lock:
            session = self._by_id.get(sid)
            if session is None:
                return None
            if (
                now - session.seen > SESSION_IDLE_SECONDS
                or now - session.created > SESSION_MAX_SECONDS
            ):
                del self._by_id[sid]
                return None
            session.seen = now
            return session

    def end(self, sid: str) -> None:
        with self._lock:
            self._by_id.pop(sid, None)

    def end_user(self, user: str) -> None:
        with self._lock:
            for sid in [s.sid for s in self._by_id.values() if s.user == user]:
                del self._by_id[sid]

    def _prune(self) -> None:
        now = time.monotonic()
        stale = [
            sid
            for sid, s in self._by_id.items()
            if now - s.seen > SESSION_IDLE_SECONDS or now - s.created > SESSION_MAX_SECONDS
        ]
        for sid in stale:
            del self._by_id[sid]


class RateLimiter:
    """A token bucket per key: `per_minute` on average, bursts of up to `burst`."""

    def __init__(self, per_minute: float, burst: int) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                return False
            self._buckets[key] = (tokens - 1.0, now)
            return True


class SignInThrottle:
    """After `limit` failed sign-ins for a name or from an address within `window` seconds,
    further attempts for it are refused until the window has passed (successes do not reset it)."""

    def __init__(self, limit: int = 5, window: float = 15 * 60) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def blocked(self, *keys: str) -> bool:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                recent = [t for t in self._failures.get(key, []) if now - t < self.window]
                self._failures[key] = recent
                if len(recent) >= self.limit:
                    return True
        return False

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                self._failures.setdefault(key, []).append(now)


class TooLarge(Exception):
    """The request body is larger than this path allows."""


class Guard:
    """Pure ASGI middleware: refuses oversized bodies (413), adds the security headers to every
    response, and logs each request (who, method, path, status, time; no query string, no body)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body: int,
        max_package: int,
        package_paths: tuple[str, ...],
        secure_cookies: bool = False,
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.max_package = max_package
        self.package_paths = package_paths
        self.secure_cookies = secure_cookies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path = scope.get("path", "")
        limit = self.max_package if path in self.package_paths else self.max_body
        status = {"code": 0}
        https = scope.get("scheme") == "https"

        async def send_guarded(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"server"]
                headers += HEADERS
                if https:
                    headers.append((b"strict-transport-security", b"max-age=31536000"))
                if not path.startswith("/static/"):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(send_guarded, 413)
            self._log(scope, 413, started)
            return
        seen = {"bytes": 0}

        async def receive_counted() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                seen["bytes"] += len(message.get("body", b""))
                if seen["bytes"] > limit:
                    raise TooLarge()
            return message

        try:
            await self.app(scope, receive_counted, send_guarded)
        except TooLarge:
            if not status["code"]:
                await _refuse(send_guarded, 413)
            status["code"] = 413
        self._log(scope, status["code"], started)

    def _log(self, scope: Scope, status: int, started: float) -> None:
        state = scope.get("state") or {}
        log.info(
            "%s %s %s %d %.0fms",
            state.get("user") or "-",
            scope.get("method", "-"),
            scope.get("path", "-")[:200],
            status,
            (time.perf_counter() - started) * 1000,
        )


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return None


async def _refuse(send: Send, status: int) -> None:
    body = b'{"error": "too-large"}'
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
