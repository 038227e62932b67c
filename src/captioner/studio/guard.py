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
* **Login** (`Access`): with ``--listen`` (or ``--token`` / ``--auth``) every request needs an
  access token (``?token=`` in the address once: it becomes a cookie; or ``Authorization: Bearer``)
  or a user name and password (HTTP Basic).  Without them the studio answers 401 and nothing else.
* **The page** (`PageTokens`, `EventPolicy`): the studio's page gets a random signed cookie when
  it is served (``HttpOnly``, ``SameSite=Strict``).  A request that runs a Gradio event is let
  through without it only for the named API events (``/caption``, ``/save``, ``/search``, and the
  Video and Imagine tabs' ``/caption_video``, ``/save_video``, ``/imagine``);
  every other event, and every other state-changing Gradio route but uploads, needs it.  A script
  calling an event by its ``fn_index`` is refused with 403 before Gradio sees it.
* **CORS**: no ``Access-Control-*`` header ever goes to another origin (another site, or
  ``localhost`` on another port); a CORS preflight from one is refused.
* **Size**: a request body larger than the limit is refused with 413 before it is read (from
  ``Content-Length``) or as soon as it grows past the limit (chunked bodies).  File uploads get
  their own, larger limit; the per-file limit is Gradio's ``max_file_size``.

Refusals are plain-text 401 / 403 / 404 / 413 / 400 answers without any CORS header.  The
middleware is pure ASGI (no Gradio import) so it can be tested with a bare ASGI app.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import logging
import re
import secrets
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

log = logging.getLogger("captioner.studio")

LOOPBACK_NAMES = frozenset({"localhost"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
#: Path suffix of Gradio's file upload route (``/gradio_api/upload``).
UPLOAD_PATH = "/upload"
#: Where Gradio's own routes live when it is mounted at ``/``.
API_PREFIX = "/gradio_api/"
#: Gradio's run-history routes (uploads of runs to a Hugging Face bucket): never answered.
RUN_HISTORY_PATHS = re.compile(r"^/gradio_api/(runs|run-history)(/|$)")
#: Gradio routes that run an event: (kind, api name) from the path after `API_PREFIX`.
EVENT_ROUTE = re.compile(r"^(?:(queue/join)|(run|api)/([^/]+)|(call)/(?:v2/)?([^/]+))/?$")
PAGE_COOKIE_PREFIX = "captioner_page_"
AUTH_COOKIE_PREFIX = "captioner_auth_"


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


class PageTokens:
    """The cookie the studio's page gets when it is served: ``nonce.signature`` under a per-process secret
    (so nothing is stored, and a studio started again issues new ones under a new cookie name)."""

    def __init__(self, secret: bytes | None = None):
        self.secret = secret or secrets.token_bytes(32)
        self.cookie_name = PAGE_COOKIE_PREFIX + self._sign("name")[:12]

    def _sign(self, text: str) -> str:
        return hmac.new(self.secret, text.encode("ascii"), hashlib.sha256).hexdigest()[:32]

    def issue(self) -> str:
        nonce = secrets.token_urlsafe(18)
        return f"{nonce}.{self._sign(nonce)}"

    def valid(self, value: str | None) -> bool:
        if not value or value.count(".") != 1:
            return False
        nonce, signature = value.split(".")
        if not nonce or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", nonce):
            return False
        return hmac.compare_digest(signature, self._sign(nonce))

    def set_cookie(self) -> str:
        return f"{self.cookie_name}={self.issue()}; Path=/; HttpOnly; SameSite=Strict"


class EventPolicy:
    """Which Gradio events a request without the page's cookie may run: the public API's, by name
    (``/gradio_api/run/search``, ``/gradio_api/call/search``) or by their own ``fn_index``."""

    def __init__(self, fn_indexes: Iterable[int], api_names: Iterable[str]):
        self.fn_indexes = frozenset(int(i) for i in fn_indexes)
        self.api_names = frozenset(str(n).strip("/") for n in api_names)

    def allows(self, route: str, body: bytes) -> bool:
        """Whether a POST to ``/gradio_api/<route>`` with this body runs only a public event."""
        m = EVENT_ROUTE.match(route)
        if m is None:
            return False
        try:
            data = json.loads(body or b"null")
        except (ValueError, UnicodeDecodeError):
            return False
        if not isinstance(data, dict):
            return False
        fn_index = data.get("fn_index")
        if fn_index is not None and not (type(fn_index) is int and fn_index in self.fn_indexes):
            return False
        if m.group(1):  # queue/join runs the body's fn_index
            return fn_index is not None
        if m.group(2):  # run/NAME, api/NAME: the body's fn_index if there is one, else NAME
            name = m.group(3)
            return name in self.api_names or (name == "predict" and fn_index is not None)
        return m.group(5) in self.api_names  # call/NAME, call/v2/NAME: NAME whatever the body says


class Access:
    """Who may use the studio at all: an access token and/or user names with passwords (None of either:
    anyone who reaches it, the loopback default).  The token is compared in constant time and kept
    in memory only; the browser keeps a cookie derived from it (not the token)."""

    def __init__(self, token: str | None = None, users: dict[str, str] | None = None):
        self.token = token or None
        self.users = dict(users or {})
        self._secret = secrets.token_bytes(32)
        self.cookie_name = AUTH_COOKIE_PREFIX + hmac.new(self._secret, b"name", hashlib.sha256).hexdigest()[:12]
        self._cookie_value = secrets.token_urlsafe(32)

    @property
    def required(self) -> bool:
        return bool(self.token or self.users)

    def token_ok(self, value: str | None) -> bool:
        return bool(self.token and value) and hmac.compare_digest(value.encode("utf-8", "replace"),
                                                                 self.token.encode("utf-8"))

    def allows(self, headers: dict[str, str], cookies: dict[str, str]) -> bool:
        if not self.required:
            return True
        cookie = cookies.get(self.cookie_name)
        if cookie and hmac.compare_digest(cookie.encode("utf-8", "replace"), self._cookie_value.encode("ascii")):
            return True
        scheme, _, credentials = (headers.get("authorization") or "").strip().partition(" ")
        scheme, credentials = scheme.lower(), credentials.strip()
        if scheme in ("bearer", "token"):
            return self.token_ok(credentials)
        if scheme == "basic" and self.users:
            try:
                user, sep, password = base64.b64decode(credentials, validate=True).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                return False
            expected = self.users.get(user)
            return bool(sep) and expected is not None and hmac.compare_digest(password.encode("utf-8"),
                                                                              expected.encode("utf-8"))
        return False

    def set_cookie(self) -> str:
        return f"{self.cookie_name}={self._cookie_value}; Path=/; HttpOnly; SameSite=Lax"

    def challenge(self) -> list[tuple[bytes, bytes]]:
        schemes = (['Basic realm="Captioner Studio", charset="UTF-8"'] if self.users else []) + \
                  (['Bearer realm="Captioner Studio"'] if self.token else [])
        return [(b"www-authenticate", s.encode("ascii")) for s in schemes]

    def message(self) -> str:
        ways = []
        if self.token:
            ways.append("open the address the studio printed when it started (it ends in ?token=...), "
                        "or send the header 'Authorization: Bearer TOKEN'")
        if self.users:
            ways.append("sign in with the user name and password given with --auth")
        return "This studio needs a login: " + "; or ".join(ways) + "."


class _BodyTooLarge(Exception):
    pass


class StudioGuard:
    """ASGI middleware: Host check, login, Origin check on state-changing requests, the page's cookie for
    events other than the API, no CORS for other origins, request-size limits.

    ``max_body_bytes`` limits every request body but uploads; ``max_upload_bytes`` limits the
    body of an upload request (several files may travel in one); None turns a limit off.
    ``events`` (an `EventPolicy`): what runs without the page's cookie; None: no such check (a bare
    app in tests).  ``access``: the login (`Access`); None: none.  ``page_path``: the path of the
    page that gets the cookie.
    """

    def __init__(self, app, *, hosts: HostPolicy | None = None, max_body_bytes: int | None = 4 << 20,
                 max_upload_bytes: int | None = None, events: EventPolicy | None = None,
                 access: Access | None = None, pages: PageTokens | None = None, page_path: str = "/"):
        self.app = app
        self.hosts = hosts or HostPolicy()
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_upload_bytes
        self.events = events
        self.access = access if access is not None and access.required else None
        self.pages = pages or PageTokens()
        self.page_path = page_path

    async def __call__(self, scope, receive, send):
        kind = scope.get("type")
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        host = headers.get("host")
        path = scope.get("path", "")
        if not self.hosts.allows(host):
            log.warning("studio: refused a request for host %r (%s %s)", host, scope.get("method", "WS"), path)
            await _refuse(scope, receive, send, 403,
                          f"This studio only answers requests addressed to {self.hosts.describe()}.")
            return
        method = scope.get("method", "GET").upper() if kind == "http" else "WEBSOCKET"
        cookies = _cookies(headers)
        if self.access is not None and not await self._logged_in(scope, receive, send, method, headers, cookies):
            return
        origin = headers.get("origin")
        own_origin = origin is not None and same_origin(origin, host, scope.get("scheme", "http"))
        if method not in SAFE_METHODS and origin is not None and not own_origin:
            log.warning("studio: refused a cross-site %s %s from %r", method, path, origin)
            await _refuse(scope, receive, send, 403,
                          "Cross-site requests are not accepted: open the studio's own page to use it.")
            return
        if origin is not None and not own_origin:
            if method == "OPTIONS" and "access-control-request-method" in headers:
                await _refuse(scope, receive, send, 403, "Cross-origin requests are not accepted.")
                return
            send = _without_cors(send)  # reads from elsewhere get no Access-Control-* header
        if RUN_HISTORY_PATHS.match(path):
            await _refuse(scope, receive, send, 404, "Not found.")
            return
        page_ok = self.pages.valid(cookies.get(self.pages.cookie_name))
        if kind == "websocket":
            if self.events is not None and not page_ok:
                await _refuse(scope, receive, send, 403, _PAGE_ONLY)
                return
            await self.app(scope, receive, send)
            return
        if method in SAFE_METHODS:
            if method == "GET" and path == self.page_path and not page_ok:
                send = _with_cookie(send, self.pages.set_cookie())
            await self.app(scope, receive, send)
            return
        is_upload = path.rstrip("/").endswith(UPLOAD_PATH)
        limit = self.max_upload_bytes if is_upload else self.max_body_bytes
        length = headers.get("content-length")
        if length is not None:
            if not length.strip().isdigit():
                await _refuse(scope, receive, send, 400, "Bad Content-Length.")
                return
            if limit is not None and int(length) > limit:
                await _refuse(scope, receive, send, 413, _too_large(limit))
                return
        gradio_upload = path.rstrip("/") == API_PREFIX + UPLOAD_PATH.strip("/")  # not run/upload: an event
        if self.events is not None and not page_ok and path.startswith(API_PREFIX) and not gradio_upload:
            # Only the public API's events run without the page: read the (small) body to see which one.
            try:
                body = await _read_body(receive, limit)
            except _BodyTooLarge:
                await _respond(send, 413, _too_large(limit))
                return
            if not self.events.allows(path[len(API_PREFIX):], body):
                log.warning("studio: refused %s %s without the studio's page", method, path)
                await _respond(send, 403, _PAGE_ONLY)
                return
            await self.app(scope, _replay(body, receive), send)
            return
        if limit is None:
            await self.app(scope, receive, send)
            return
        await self._limited(scope, receive, send, limit)

    async def _logged_in(self, scope, receive, send, method, headers, cookies) -> bool:
        """Whether the request may go on; if not, or if it logged in with ``?token=``, it is answered here."""
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        if scope["type"] == "http" and method in ("GET", "HEAD") and self.access.token_ok(query.get("token")):
            # a link with the token: a cookie, and the same address without the token (on this site only)
            rest = urlencode([(k, v) for k, v in query.items() if k != "token"])
            location = quote("/" + scope.get("path", "/").lstrip("/")) + (f"?{rest}" if rest else "")
            await _respond(send, 303, "Signed in.", [(b"location", location.encode("latin-1")),
                                                     (b"set-cookie", self.access.set_cookie().encode("ascii"))])
            return False
        if self.access.allows(headers, cookies):
            return True
        log.warning("studio: refused a request without a login (%s %s)", method, scope.get("path"))
        if scope["type"] == "websocket":
            await _refuse(scope, receive, send, 403, "")
        else:
            await _respond(send, 401, self.access.message(), self.access.challenge())
        return False

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


_PAGE_ONLY = ("Only the studio's own page can do this: the HTTP API is the /caption, /save and /search "
              "events (and /caption_video, /save_video, /imagine; see the README).")


def _cookies(headers: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in (headers.get("cookie") or "").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name and name not in out:
            out[name] = value.strip().strip('"')
    return out


async def _read_body(receive, limit: int | None) -> bytes:
    body = b""
    while True:
        message = await receive()
        if message.get("type") == "http.disconnect":
            break
        body += message.get("body", b"")
        if limit is not None and len(body) > limit:
            raise _BodyTooLarge
        if not message.get("more_body"):
            break
    return body


def _replay(body: bytes, receive):
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()
    return replay


def _without_cors(send):
    async def stripped(message):
        if message.get("type") == "http.response.start":
            message = dict(message, headers=[(k, v) for k, v in message.get("headers") or []
                                             if not k.lower().startswith(b"access-control-")])
        await send(message)
    return stripped


def _with_cookie(send, cookie: str):
    async def with_cookie(message):
        if message.get("type") == "http.response.start" and message.get("status") == 200:
            kinds = [v for k, v in message.get("headers") or [] if k.lower() == b"content-type"]
            if kinds and kinds[0].lower().startswith(b"text/html"):
                message = dict(message, headers=[*message.get("headers", []),
                                                 (b"set-cookie", cookie.encode("ascii"))])
        await send(message)
    return with_cookie


def _too_large(limit: int) -> str:
    return f"The request is too large (more than {limit / 2**20:.0f} MB)."


def _headers(scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in scope.get("headers") or []:
        name = key.decode("latin-1").lower()
        if name not in out:  # the first of repeated headers, like Starlette
            out[name] = value.decode("latin-1")
    return out


async def _respond(send, status: int, text: str, extra: list[tuple[bytes, bytes]] = ()) -> None:
    body = (text + "\n").encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode("ascii")),
                            (b"connection", b"close"), *extra]})
    await send({"type": "http.response.body", "body": body})


async def _refuse(scope, receive, send, status: int, text: str) -> None:
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.close", "code": 1008})
        return
    await _respond(send, status, text)
