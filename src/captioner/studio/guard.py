"""The studio's front door: an ASGI middleware that refuses requests a local app should never answer.

* **Host** (DNS rebinding): a web page on ``evil.example`` can make its name resolve to 127.0.0.1
  and then talk to the studio as if it were its own site.  Such requests still carry
  ``Host: evil.example``, so only loopback names and addresses (``localhost``, ``127.0.0.1``,
  ``[::1]``, any port) are answered, plus the names given with ``--allowed-host`` and, when the
  studio listens on the network, hosts written as IP addresses (a rebinding attack needs a DNS
  name: an address typed as digits always reaches the machine it names).
* **Origin** (cross-site requests): a page on another site may send a form or ``fetch`` to
  ``http://127.0.0.1:7860`` with the user's browser.  Browsers say where such a request comes
  from in ``Origin``; a request that changes something (any method but GET, HEAD and OPTIONS,
  and every WebSocket) is refused when it has an ``Origin`` that is not the studio's own.
  Scripts (gradio_client, curl) send no ``Origin`` and are not affected.
* **Size**: a request body larger than the limit is refused with 413 before it is read (from
  ``Content-Length``) or as soon as it grows past the limit (chunked bodies).  File uploads get
  their own, larger limit; the per-file limit is Gradio's ``max_file_size``.

Refusals are plain-text 403 / 413 / 400 answers without any CORS header.  The middleware is
pure ASGI (no Gradio import) so it can be tested with a bare ASGI app.
"""
from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from urllib.parse import urlsplit

log = logging.getLogger("captioner.studio")

LOOPBACK_NAMES = frozenset({"localhost"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
#: Path suffix of Gradio's file upload route (``/gradio_api/upload``).
UPLOAD_PATH = "/upload"


def split_host(value: str | None) -> tuple[str, int | None] | None:
    """``Host``-style ``name[:port]`` -> (lower-case name without brackets or final dot, port); None if malformed."""
    if not value:
        return None
    value = value.strip().lower()
    if value.startswith("["):  # [v6 address]:port
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[1:end], value[end + 1:]
        if rest and not rest.startswith(":"):
            return None
        port_text = rest[1:] if rest else ""
    elif value.count(":") == 1:
        name, port_text = value.split(":")
    elif ":" in value:  # a bare IPv6 address (not valid in Host, but harmless to understand)
        name, port_text = value, ""
    else:
        name, port_text = value, ""
    name = name.rstrip(".")
    if not name or any(c in name for c in "/\\@ \t?#"):
        return None
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            return None
        return name, int(port_text)
    return name, None


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def is_loopback(name: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1)."""
    if name in LOOPBACK_NAMES:
        return True
    ip = _ip(name)
    return ip is not None and ip.is_loopback


class HostPolicy:
    """Which ``Host`` names the studio answers to."""

    def __init__(self, allowed_hosts: Iterable[str] = (), *, allow_addresses: bool = False):
        names = set()
        for host in allowed_hosts:
            parsed = split_host(str(host))
            if parsed is None:
                raise ValueError(f"not a host name: {host!r}")
            names.add(parsed[0])
        self.names = frozenset(names)
        self.allow_addresses = allow_addresses

    def allows(self, host_header: str | None) -> bool:
        parsed = split_host(host_header)
        if parsed is None:
            return False
        name = parsed[0]
        if is_loopback(name) or name in self.names:
            return True
        return self.allow_addresses and _ip(name) is not None

    def describe(self) -> str:
        extra = sorted(name for name in self.names if not is_loopback(name))
        text = "localhost, 127.0.0.1 or [::1]"
        if extra:
            text += ", " + ", ".join(extra)
        if self.allow_addresses:
            text += " or an IP address of this computer"
        return text


def same_origin(origin: str, host_header: str, scheme: str = "http") -> bool:
    """Whether the ``Origin`` header names the site that the request is addressed to.

    Host names must be equal, and ports: the ``Host`` port, or when ``Host`` has none (port 80,
    or a reverse proxy in front), the default port of the origin's scheme.  The scheme itself is
    not compared (one port serves one protocol; a TLS proxy forwards plain HTTP).
    """
    if not origin or origin == "null":
        return False
    try:
        parts = urlsplit(origin)
        origin_port = parts.port
    except ValueError:
        return False
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        return False
    target = split_host(host_header)
    if target is None:
        return False
    origin_name = parts.hostname.lower().rstrip(".")
    origin_port = origin_port or DEFAULT_PORTS[parts.scheme]
    target_port = target[1] or DEFAULT_PORTS[parts.scheme]
    return origin_name == target[0] and origin_port == target_port


class _BodyTooLarge(Exception):
    pass


class StudioGuard:
    """ASGI middleware: Host check, Origin check on state-changing requests, request-size limits.

    ``max_body_bytes`` limits every request body but uploads; ``max_upload_bytes`` limits the
    body of an upload request (several files may travel in one); None turns a limit off.
    """

    def __init__(self, app, *, hosts: HostPolicy | None = None, max_body_bytes: int | None = 4 << 20,
                 max_upload_bytes: int | None = None):
        self.app = app
        self.hosts = hosts or HostPolicy()
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope, receive, send):
        kind = scope.get("type")
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        host = headers.get("host")
        if not self.hosts.allows(host):
            log.warning("studio: refused a request for host %r (%s %s)", host, scope.get("method", "WS"),
                        scope.get("path"))
            await _refuse(scope, receive, send, 403,
                          f"This studio only answers requests addressed to {self.hosts.describe()}.")
            return
        method = scope.get("method", "GET").upper() if kind == "http" else "WEBSOCKET"
        origin = headers.get("origin")
        if method not in SAFE_METHODS and origin is not None \
                and not same_origin(origin, host, scope.get("scheme", "http")):
            log.warning("studio: refused a cross-site %s %s from %r", method, scope.get("path"), origin)
            await _refuse(scope, receive, send, 403,
                          "Cross-site requests are not accepted: open the studio's own page to use it.")
            return
        if kind == "websocket" or method in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        limit = self.max_upload_bytes if scope.get("path", "").rstrip("/").endswith(UPLOAD_PATH) \
            else self.max_body_bytes
        if limit is None:
            await self.app(scope, receive, send)
            return
        length = headers.get("content-length")
        if length is not None:
            if not length.strip().isdigit():
                await _refuse(scope, receive, send, 400, "Bad Content-Length.")
                return
            if int(length) > limit:
                await _refuse(scope, receive, send, 413, _too_large(limit))
                return
        await self._limited(scope, receive, send, limit)

    async def _limited(self, scope, receive, send, limit: int) -> None:
        """Run the app, stopping the body at ``limit`` bytes (for bodies without Content-Length)."""
        received = 0
        too_large = False
        started = False

        async def limited_receive():
            nonlocal received, too_large
            message = await receive()
            if message.get("type") == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    too_large = True
                    raise _BodyTooLarge
            return message

        async def tracking_send(message):
            nonlocal started
            if too_large and not started:
                return  # the app's own answer to the interruption; ours follows
            if message.get("type") == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            pass
        except Exception:
            if not too_large:
                raise
        if too_large and not started:
            await _respond(send, 413, _too_large(limit))


def _too_large(limit: int) -> str:
    return f"The request is too large (more than {limit / 2**20:.0f} MB)."


def _headers(scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in scope.get("headers") or []:
        name = key.decode("latin-1").lower()
        if name not in out:  # the first of repeated headers, like Starlette
            out[name] = value.decode("latin-1")
    return out


async def _respond(send, status: int, text: str) -> None:
    body = (text + "\n").encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode("ascii")),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


async def _refuse(scope, receive, send, status: int, text: str) -> None:
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.close", "code": 1008})
        return
    await _respond(send, status, text)
