"""Download an image by URL for the API's `url` parameter without becoming an SSRF proxy.

The server fetches whatever URL a client names, so every hop is checked: the host is resolved here,
every resolved address must be public (or operator allow-listed), and the connection goes to the
checked IP itself so a DNS rebind between check and connect cannot swap it. The Host header and
TLS SNI/certificate checks keep using the original hostname. One deadline covers DNS, connects,
redirects and the body; a watchdog shuts the socket at the deadline so a trickling server cannot
stretch it. Sync by design: callers run it in a worker thread.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from urllib.parse import quote, urljoin, urlsplit

from app.config import DEFAULT_MAX_IMAGE_BYTES
from app.errors import ApiError, bad_request, invalid_argument

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024
# Printable ASCII stays as the client wrote it; spaces, controls and non-ASCII get percent-encoded
# so http.client never sees a character it would reject or that could split the request line.
_URL_SAFE = "".join(chr(code) for code in range(0x21, 0x7F))
_CLOUD_METADATA = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True)
class _Target:
    """One hop's URL, split into what the connection and the request line need."""

    url: str
    scheme: str
    host: str
    port: int
    request_target: str


class _Deadline:
    """The single time budget shared by every step of one download."""

    def __init__(self, seconds: float, started_at: float | None = None) -> None:
        self._end = (time.monotonic() if started_at is None else started_at) + seconds

    def remaining(self) -> float:
        """Seconds left, raising DOWNLOAD_TIMEOUT once none are."""
        left = self._end - time.monotonic()
        if left <= 0:
            raise download_timeout()
        return left

    def expired(self) -> bool:
        """Whether the budget is spent; used to tell a watchdog-cut socket from a server error."""
        return time.monotonic() >= self._end


def fetch_image(
    url: str,
    *,
    allowlist: Sequence[str] = (),
    timeout_s: float = 5.0,
    max_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
    max_redirects: int = 3,
    started_at: float | None = None,
) -> bytes:
    """Return the body at `url`, following at most `max_redirects` re-checked redirects.

    `allowlist` holds operator-trusted CIDRs or IPs (e.g. "10.0.0.0/8") that may be fetched even
    though they are not public; an invalid entry is a configuration bug and raises ValueError.
    Client-facing failures raise ApiError: INVALID_ARGUMENT, DOWNLOAD_ERROR, DOWNLOAD_TIMEOUT or
    IMAGE_FILE_SIZE_TOO_BIG. `started_at` (a `time.monotonic()` reading) starts the deadline
    earlier than the call, so time spent waiting for a fetch slot counts against it.
    """
    networks = parse_allowlist(allowlist)
    deadline = _Deadline(timeout_s, started_at)
    target = _parse_url(url)
    for _ in range(max_redirects + 1):
        outcome = _fetch_hop(target, networks, deadline, max_bytes)
        if isinstance(outcome, bytes):
            return outcome
        target = _parse_redirect(target, outcome)
    raise bad_request("DOWNLOAD_ERROR", f"more than {max_redirects} redirects")


def parse_allowlist(entries: Sequence[str]) -> tuple[IpNetwork, ...]:
    """Parse operator allow-list entries; exposed so configuration can be validated at startup."""
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries)


def _parse_url(url: str) -> _Target:
    """Validate scheme and host up front so bad input is INVALID_ARGUMENT, not a network error."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
        host = (parts.hostname or "").encode("idna").decode("ascii")
    except (ValueError, UnicodeError) as exc:
        raise invalid_argument(f"argument 'url': malformed URL ({exc})") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise invalid_argument("argument 'url': only http and https URLs are supported")
    if not host:
        raise invalid_argument("argument 'url': URL has no host")
    path = parts.path or "/"
    request_target = quote(f"{path}?{parts.query}" if parts.query else path, safe=_URL_SAFE)
    default_port = 443 if scheme == "https" else 80
    return _Target(parts.geturl(), scheme, host, port or default_port, request_target)


def _parse_redirect(current: _Target, location: str) -> _Target:
    """Resolve a Location against the current URL; a bad one is the server's fault, not the
    client's, so it is DOWNLOAD_ERROR rather than INVALID_ARGUMENT."""
    try:
        return _parse_url(urljoin(current.url, location))
    except ApiError as exc:
        raise bad_request("DOWNLOAD_ERROR", f"unusable redirect: {exc.reason}") from exc
    except ValueError as exc:  # urljoin's own parse of a Location such as "http://[::1"
        raise bad_request("DOWNLOAD_ERROR", f"unusable redirect: {exc}") from exc


def _fetch_hop(
    target: _Target, allowlist: tuple[IpNetwork, ...], deadline: _Deadline, max_bytes: int
) -> bytes | str:
    """Fetch one URL: the body on 2xx, the Location on a redirect, DOWNLOAD_ERROR otherwise."""
    addresses = _checked_addresses(target, allowlist, deadline)
    try:
        with _connected(target, addresses, deadline) as conn:
            conn.putrequest("GET", target.request_target, skip_accept_encoding=True)
            conn.putheader("Accept", "image/*")
            conn.putheader("Accept-Encoding", "identity")
            conn.endheaders()
            response = conn.getresponse()
            return _handle_response(response, max_bytes, deadline)
    except ApiError:
        raise
    except (OSError, http.client.HTTPException) as exc:
        if isinstance(exc, TimeoutError) or deadline.expired():
            raise download_timeout() from exc
        raise bad_request("DOWNLOAD_ERROR", f"download failed: {exc}") from exc


def _handle_response(
    response: http.client.HTTPResponse, max_bytes: int, deadline: _Deadline
) -> bytes | str:
    """Classify the response; only 2xx bodies are read, and never past `max_bytes`."""
    if response.status in _REDIRECT_STATUSES:
        location = response.getheader("Location")
        if not location:
            raise bad_request("DOWNLOAD_ERROR", "redirect without a Location header")
        return location
    if not 200 <= response.status < 300:
        raise bad_request("DOWNLOAD_ERROR", f"server answered HTTP {response.status}")
    declared = response.getheader("Content-Length")
    if declared and declared.strip().isdigit() and int(declared) > max_bytes:
        raise _too_big(max_bytes)
    return _read_capped(response, max_bytes, deadline)


def _read_capped(response: http.client.HTTPResponse, max_bytes: int, deadline: _Deadline) -> bytes:
    """Stream the body so an endless or lying server costs at most `max_bytes` of memory.

    A watchdog shutdown or an early close looks like a clean EOF to read1, hence the checks after.
    """
    chunks: list[bytes] = []
    total = 0
    while chunk := response.read1(_CHUNK):
        deadline.remaining()
        total += len(chunk)
        if total > max_bytes:
            raise _too_big(max_bytes)
        chunks.append(chunk)
    if deadline.expired():
        raise download_timeout()
    if response.length:
        raise bad_request("DOWNLOAD_ERROR", "connection closed before the body was complete")
    return b"".join(chunks)


def _checked_addresses(
    target: _Target, allowlist: tuple[IpNetwork, ...], deadline: _Deadline
) -> list[IpAddress]:
    """Resolve the host and refuse the hop if ANY address is off-limits (no partial trust)."""
    addresses = _resolve(target.host, target.port, deadline)
    for address in addresses:
        if not _is_allowed(address, allowlist):
            raise bad_request(
                "DOWNLOAD_ERROR", f"address {address} of host {target.host} is not allowed"
            )
    return addresses


def _resolve(host: str, port: int, deadline: _Deadline) -> list[IpAddress]:
    """getaddrinfo with the deadline applied; it has no timeout of its own, so it runs in a
    daemon thread that is abandoned (not awaited) if the resolver hangs."""
    result: Future[list[IpAddress]] = Future()

    def work() -> None:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            result.set_result(_unique_addresses(info[4][0] for info in infos))
        except (OSError, UnicodeError, ValueError) as exc:
            result.set_exception(exc)

    threading.Thread(target=work, name="fetch-resolve", daemon=True).start()
    try:
        return result.result(timeout=deadline.remaining())
    except TimeoutError as exc:
        raise download_timeout() from exc
    except (OSError, UnicodeError, ValueError) as exc:
        raise bad_request("DOWNLOAD_ERROR", f"cannot resolve host {host}") from exc


def _unique_addresses(raw: Iterable[str]) -> list[IpAddress]:
    """Parse getaddrinfo's strings (dropping any IPv6 zone id) in order, without duplicates."""
    seen: dict[IpAddress, None] = {}
    for text in raw:
        seen.setdefault(ipaddress.ip_address(text.split("%", 1)[0]), None)
    return list(seen)


def _is_allowed(address: IpAddress, allowlist: tuple[IpNetwork, ...]) -> bool:
    """Public addresses pass; anything else only if the operator allow-listed it."""
    candidates = [address, *_embedded_ipv4(address)]
    if any(candidate in network for candidate in candidates for network in allowlist):
        return True
    return not any(_is_forbidden(candidate) for candidate in candidates)


def _embedded_ipv4(address: IpAddress) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 one tunnels to (mapped, 6to4, NAT64), which must be checked too."""
    if isinstance(address, ipaddress.IPv4Address):
        return []
    embedded = [address.ipv4_mapped, address.sixtofour]
    if address in _NAT64:
        embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return [ip for ip in embedded if ip is not None]


def _is_forbidden(address: IpAddress) -> bool:
    """Loopback, private, link-local, CGNAT, multicast, reserved, unspecified or cloud metadata."""
    return (
        address in _CLOUD_METADATA
        or (isinstance(address, ipaddress.IPv4Address) and address in _CGNAT)
        or address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_unspecified
        or address.is_multicast
        or address.is_reserved
        or not address.is_global
    )


@contextmanager
def _connected(
    target: _Target, addresses: list[IpAddress], deadline: _Deadline
) -> Iterator[http.client.HTTPConnection]:
    """Yield a connection pinned to the first reachable checked address (resolver order)."""
    conn_type = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    failure: OSError = OSError(f"no address for host {target.host}")
    for address in addresses:
        conn = conn_type(target.host, target.port, address, deadline)
        with _watchdog(conn, deadline):
            try:
                conn.connect()
            except OSError as exc:
                failure = exc
                continue
            yield conn
            return
    raise failure


@contextmanager
def _watchdog(conn: http.client.HTTPConnection, deadline: _Deadline) -> Iterator[None]:
    """Shut the socket when the deadline passes and always close it afterwards.

    Socket timeouts bound each recv, not the sum, so a server trickling a byte at a time could
    otherwise stretch a 5 s budget indefinitely, during the TLS handshake, headers or body.
    """
    timer = threading.Timer(deadline.remaining(), _shutdown, args=(conn,))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        conn.close()


def _shutdown(conn: http.client.HTTPConnection) -> None:
    """Wake any blocked recv/send by shutting the raw socket (bypassing TLS state on purpose)."""
    sock = conn.sock
    if sock is not None:
        with suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP whose Host header names the URL's host but whose TCP peer is the checked IP."""

    def __init__(self, host: str, port: int, address: IpAddress, deadline: _Deadline) -> None:
        super().__init__(host, port, timeout=deadline.remaining())
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((str(self._address), self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to the checked IP, with SNI and certificate verification against the URL's host."""

    def __init__(self, host: str, port: int, address: IpAddress, deadline: _Deadline) -> None:
        super().__init__(
            host, port, timeout=deadline.remaining(), context=ssl.create_default_context()
        )
        self._address = address

    def connect(self) -> None:
        raw = socket.create_connection((str(self._address), self.port), self.timeout)
        # Handshake after assigning self.sock so the watchdog can reach a stalled handshake too.
        self.sock = self._context.wrap_socket(
            raw, server_hostname=self.host, do_handshake_on_connect=False
        )
        self.sock.do_handshake()


def download_timeout() -> ApiError:
    """DOWNLOAD_TIMEOUT, raised from whichever step used up the shared deadline."""
    return bad_request("DOWNLOAD_TIMEOUT", "image download took too long")


def _too_big(max_bytes: int) -> ApiError:
    """IMAGE_FILE_SIZE_TOO_BIG, for a declared or streamed body over the cap."""
    return bad_request("IMAGE_FILE_SIZE_TOO_BIG", f"image exceeds {max_bytes} bytes")
