"""Headless Chromium with the network cut off, for the browser tests of /docs and /console.

Chromium is Debian's (`apt-get install chromium`; .ci/run installs it), driven by Playwright for
Python through `executable_path`, since Playwright's own browser download is unreachable here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

CHROMIUM = "/usr/bin/chromium"
DEAD_PROXY = "http://127.0.0.1:9"  # the discard port: nothing answers there


@contextmanager
def offline_browser() -> Iterator[Any]:
    """A Playwright Browser whose every request goes to a proxy nobody listens on, except
    those to 127.0.0.1. Skips, saying why, where chromium is missing (CI fails on any skip).

    (Playwright's request interception would cut the network too, but it drops the body of a
    request that uploads a file.)
    """
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed: apt-get install chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        proxy = {"server": DEAD_PROXY, "bypass": "127.0.0.1"}
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, proxy=proxy)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class PageWatch:
    """What a page did that a test must fail on: requests leaving the server, console errors
    and uncaught exceptions."""

    origin: str  # host:port of the server under test
    outside: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def attach(self, page: Any) -> Any:
        page.on("request", self._request)
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        return page

    def _request(self, request: Any) -> None:
        url = urlsplit(request.url)
        if url.scheme not in ("blob", "data") and url.netloc != self.origin:
            self.outside.append(request.url)

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.console_errors.append(f"{message.text} ({message.location.get('url')})")

    def assert_clean(self) -> None:
        assert self.outside == [], f"the page asked outside the server: {self.outside}"
        assert self.console_errors == [], f"console errors: {self.console_errors}"
        assert self.page_errors == [], f"uncaught exceptions: {self.page_errors}"


def watched_page(browser: Any, base_url: str, **context_options: Any) -> tuple[Any, PageWatch]:
    """A new page in its own context (fresh session storage), watched by a PageWatch."""
    watch = PageWatch(urlsplit(base_url).netloc)
    page = browser.new_context(**context_options).new_page()
    return watch.attach(page), watch
