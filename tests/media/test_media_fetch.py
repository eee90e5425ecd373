"""fetch_image against real loopback HTTP(S) servers: SSRF refusals, pinning, limits, timeouts.

Loopback is refused by default, so the "trusted" server binds 127.0.0.2 and is allow-listed as
127.0.0.2/32, while a second server on 127.0.0.1 plays the internal service a redirect must not
reach. All of 127/8 is local on Linux, which is what makes this testable without a network.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from app.errors import ApiError
from app.media.fetch import fetch_image

TRUSTED = "127.0.0.2"
INTERNAL = "127.0.0.1"
ALLOW = ("127.0.0.2/32",)
IMAGE = b"\xff\xd8\xff" + bytes(range(256)) * 40 + b"\xff\xd9"
FAKE_HOST = "images.test"


class Handler(BaseHTTPRequestHandler):
    """Routes for every server behaviour the fetcher must cope with."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        """Keep pytest output clean."""

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        url = urlsplit(self.path)
        route = getattr(self, "route_" + url.path.strip("/").replace("-", "_"), self.route_missing)
        # The client hanging up mid-trickle is the point of the slow routes, not a server error.
        with suppress(OSError):
            route(parse_qs(url.query))

    def send_body(self, body: bytes, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def route_img(self, _: dict[str, list[str]]) -> None:
        self.send_body(IMAGE)

    def route_host(self, _: dict[str, list[str]]) -> None:
        self.send_body(self.headers["Host"].encode())

    def route_redirect(self, query: dict[str, list[str]]) -> None:
        self.send_response(int(query.get("code", ["302"])[0]))
        self.send_header("Location", query["to"][0])
        self.send_header("Content-Length", "0")
        self.end_headers()

    def route_loop(self, _: dict[str, list[str]]) -> None:
        self.route_redirect({"to": ["/loop"]})

    def route_missing(self, _: dict[str, list[str]]) -> None:
        self.send_body(b"not here", status=404)

    def route_slow_body(self, _: dict[str, list[str]]) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        for _ in range(1000):
            self.wfile.write(b"x")
            self.wfile.flush()
            time.sleep(0.05)

    def route_slow_headers(self, _: dict[str, list[str]]) -> None:
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx":
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            time.sleep(0.05)

    def route_endless(self, _: dict[str, list[str]]) -> None:
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = b"y" * 4096
        for _ in range(1000):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")

    def route_declared_huge(self, _: dict[str, list[str]]) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(50 * 1024 * 1024))
        self.end_headers()
        self.wfile.write(b"z" * 1024)

    def route_short(self, _: dict[str, list[str]]) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(b"only ten b")
        self.close_connection = True


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str) -> None:
        super().__init__((host, 0), Handler)
        self.hits: list[str] = []

    @property
    def base(self) -> str:
        host, port = self.server_address[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class Server6(Server):
    address_family = socket.AF_INET6


def serve(server: Server) -> Iterator[Server]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def trusted() -> Iterator[Server]:
    yield from serve(Server(TRUSTED))


@pytest.fixture(scope="module")
def internal() -> Iterator[Server]:
    yield from serve(Server(INTERNAL))


def refusal(url: str, **kwargs: object) -> ApiError:
    with pytest.raises(ApiError) as caught:
        fetch_image(url, **kwargs)  # type: ignore[arg-type]
    assert caught.value.http_status == 400
    assert caught.value.reason
    return caught.value


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> Callable[[list[str]], None]:
    """Make FAKE_HOST resolve to the given answers, one per lookup (the last one repeats)."""
    real = socket.getaddrinfo

    def install(answers: list[str]) -> None:
        pending = list(answers)

        def lookup(host: str, port: int, *args: object, **kwargs: object) -> list:
            if host != FAKE_HOST:
                return real(host, port, *args, **kwargs)  # type: ignore[arg-type]
            ip = pending.pop(0) if len(pending) > 1 else pending[0]
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))]

        monkeypatch.setattr(socket, "getaddrinfo", lookup)

    return install


# --- accepted downloads -------------------------------------------------------------------------


def test_allow_listed_server_returns_bytes(trusted: Server) -> None:
    assert fetch_image(f"{trusted.base}/img", allowlist=ALLOW) == IMAGE


def test_single_ip_allowlist_entry(trusted: Server) -> None:
    assert fetch_image(f"{trusted.base}/img", allowlist=[TRUSTED]) == IMAGE


def test_allow_listed_ipv6_literal() -> None:
    for server in serve(Server6("::1")):
        assert fetch_image(f"{server.base}/host", allowlist=["::1/128"]) == (
            f"[::1]:{server.server_address[1]}".encode()
        )


def test_redirect_within_allowed_server_is_followed(trusted: Server) -> None:
    url = f"{trusted.base}/redirect?to=/img&code=301"
    assert fetch_image(url, allowlist=ALLOW, max_redirects=1) == IMAGE


def test_hostname_keeps_host_header_while_connecting_to_checked_ip(
    trusted: Server, fake_dns: Callable[[list[str]], None]
) -> None:
    """The first lookup is what gets checked and connected to; a rebind afterwards to the
    forbidden internal address is never consulted."""
    fake_dns([TRUSTED, INTERNAL])
    port = trusted.server_address[1]
    before = len(trusted.hits)
    body = fetch_image(f"http://{FAKE_HOST}:{port}/host", allowlist=ALLOW)
    assert body == f"{FAKE_HOST}:{port}".encode()
    assert trusted.hits[before:] == ["/host"]


# --- refused addresses --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.9.9.9",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "169.254.1.1",
        "100.64.0.1",
        "100.100.100.200",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "[::1]",
        "[::]",
        "[fe80::1]",
        "[fc00::1]",
        "[fd00:ec2::254]",
        "[ff02::1]",
        "[::ffff:127.0.0.1]",
        "[::ffff:169.254.169.254]",
        "[2002:7f00:1::1]",
        "[64:ff9b::a9fe:a9fe]",
    ],
)
def test_non_public_addresses_refused(host: str) -> None:
    error = refusal(f"http://{host}:9/img")
    assert error.status == "DOWNLOAD_ERROR"
    assert "not allowed" in (error.reason or "")


def test_loopback_refused_before_any_connection(internal: Server) -> None:
    before = len(internal.hits)
    assert refusal(f"{internal.base}/img").status == "DOWNLOAD_ERROR"
    assert len(internal.hits) == before


def test_localhost_name_refused(internal: Server) -> None:
    error = refusal(f"http://localhost:{internal.server_address[1]}/img")
    assert error.status == "DOWNLOAD_ERROR"
    assert "not allowed" in (error.reason or "")


def test_allowlist_is_exact(internal: Server) -> None:
    """127.0.0.2/32 must not open the rest of loopback."""
    assert refusal(f"{internal.base}/img", allowlist=ALLOW).status == "DOWNLOAD_ERROR"


@pytest.mark.parametrize("target", ["{internal}/img", "http://localhost:{port}/img"])
def test_redirect_to_internal_address_refused(
    trusted: Server, internal: Server, target: str
) -> None:
    location = target.format(internal=internal.base, port=internal.server_address[1])
    before = len(internal.hits)
    error = refusal(f"{trusted.base}/redirect?to={location}", allowlist=ALLOW)
    assert error.status == "DOWNLOAD_ERROR"
    assert "not allowed" in (error.reason or "")
    assert len(internal.hits) == before


def test_redirect_to_other_scheme_refused(trusted: Server) -> None:
    error = refusal(f"{trusted.base}/redirect?to=file:///etc/passwd", allowlist=ALLOW)
    assert error.status == "DOWNLOAD_ERROR"


def test_host_resolving_to_any_forbidden_address_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """One public and one private answer: the whole host is refused, not just the bad address."""
    real = socket.getaddrinfo

    def lookup(host: str, port: int, *args: object, **kwargs: object) -> list:
        if host != FAKE_HOST:
            return real(host, port, *args, **kwargs)  # type: ignore[arg-type]
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.5", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    error = refusal(f"http://{FAKE_HOST}/img")
    assert error.status == "DOWNLOAD_ERROR"
    assert "10.0.0.5" in (error.reason or "")


# --- malformed URLs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/a.jpg",
        "gopher://example.com/",
        "javascript:alert(1)",
        "not a url",
        "",
        "http://",
        "http:///path",
        "http://example.com:99999/",
        "http://example.com:port/",
    ],
)
def test_malformed_or_unsupported_urls_are_invalid_argument(url: str) -> None:
    error = refusal(url)
    assert error.status == "INVALID_ARGUMENT"
    assert (error.reason or "").startswith("argument 'url'")


def test_invalid_allowlist_entry_is_a_configuration_error() -> None:
    with pytest.raises(ValueError):
        fetch_image("http://example.com/", allowlist=["not-a-cidr"])


# --- download failures --------------------------------------------------------------------------


def test_http_error_status(trusted: Server) -> None:
    error = refusal(f"{trusted.base}/missing", allowlist=ALLOW)
    assert error.status == "DOWNLOAD_ERROR"
    assert "404" in (error.reason or "")


def test_connection_refused() -> None:
    with socket.socket() as probe:
        probe.bind((TRUSTED, 0))
        port = probe.getsockname()[1]
    assert refusal(f"http://{TRUSTED}:{port}/img", allowlist=ALLOW).status == "DOWNLOAD_ERROR"


def test_dns_failure() -> None:
    assert refusal("http://no-such-host.invalid/img").status == "DOWNLOAD_ERROR"


def test_too_many_redirects(trusted: Server) -> None:
    error = refusal(f"{trusted.base}/loop", allowlist=ALLOW, max_redirects=3)
    assert error.status == "DOWNLOAD_ERROR"
    assert "redirect" in (error.reason or "")


def test_redirect_limit_zero_refuses_first_redirect(trusted: Server) -> None:
    url = f"{trusted.base}/redirect?to=/img"
    assert refusal(url, allowlist=ALLOW, max_redirects=0).status == "DOWNLOAD_ERROR"


def test_body_shorter_than_declared(trusted: Server) -> None:
    assert refusal(f"{trusted.base}/short", allowlist=ALLOW).status == "DOWNLOAD_ERROR"


@pytest.mark.parametrize("route", ["slow-body", "slow-headers"])
def test_trickling_server_times_out_on_total_budget(trusted: Server, route: str) -> None:
    """Each byte arrives well within any per-read timeout; only a whole-download deadline helps."""
    started = time.monotonic()
    error = refusal(f"{trusted.base}/{route}", allowlist=ALLOW, timeout_s=0.6)
    assert error.status == "DOWNLOAD_TIMEOUT"
    assert time.monotonic() - started < 1.5


def test_streamed_body_over_cap_refused(trusted: Server) -> None:
    error = refusal(f"{trusted.base}/endless", allowlist=ALLOW, max_bytes=100_000)
    assert error.status == "IMAGE_FILE_SIZE_TOO_BIG"


def test_declared_length_over_cap_refused_without_reading(trusted: Server) -> None:
    error = refusal(f"{trusted.base}/declared-huge", allowlist=ALLOW)
    assert error.status == "IMAGE_FILE_SIZE_TOO_BIG"


# --- HTTPS: SNI and certificate checks use the URL's hostname, the socket uses the checked IP ----


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl CLI not available to mint a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", f"/CN={FAKE_HOST}",
         "-addext", f"subjectAltName=DNS:{FAKE_HOST}",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    server = Server(TRUSTED)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    for running in serve(server):
        yield running, cert


def test_https_verifies_against_url_hostname(
    tls_server: tuple[Server, Path],
    fake_dns: Callable[[list[str]], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, cert = tls_server
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    fake_dns([TRUSTED])
    port = server.server_address[1]
    assert fetch_image(f"https://{FAKE_HOST}:{port}/img", allowlist=ALLOW) == IMAGE
    assert fetch_image(f"https://{FAKE_HOST}:{port}/host", allowlist=ALLOW) == (
        f"{FAKE_HOST}:{port}".encode()
    )


def test_https_certificate_for_another_name_refused(
    tls_server: tuple[Server, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, cert = tls_server
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    error = refusal(f"https://{TRUSTED}:{server.server_address[1]}/img", allowlist=ALLOW)
    assert error.status == "DOWNLOAD_ERROR"


def test_https_untrusted_certificate_refused(
    tls_server: tuple[Server, Path], fake_dns: Callable[[list[str]], None]
) -> None:
    fake_dns([TRUSTED])
    port = tls_server[0].server_address[1]
    error = refusal(f"https://{FAKE_HOST}:{port}/img", allowlist=ALLOW)
    assert error.status == "DOWNLOAD_ERROR"
