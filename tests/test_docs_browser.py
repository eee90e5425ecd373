"""Swagger UI in a real browser with the network cut off: /docs loads from the server alone, and
"Try it out" on /face/detection uploads a photo and shows its face.

Headless Chromium is Debian's (`apt-get install chromium`; .ci/run installs it), driven by
Playwright for Python through `executable_path`, since Playwright's own browser download is
unreachable here.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from app.config import get_settings
from tests.conftest import Credentials, make_account
from tests.servers import Server

CHROMIUM = "/usr/bin/chromium"
DEAD_PROXY = "http://127.0.0.1:9"  # the discard port: nothing answers there

pytestmark = pytest.mark.slow


@pytest.fixture
def browser() -> Iterator:
    if not Path(CHROMIUM).exists():
        # A skip, which .ci/run turns into a failure: it installs chromium first.
        pytest.skip(f"{CHROMIUM} not installed: apt-get install chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # The network cut off: every request goes to a proxy nobody listens on, except those to
        # the server's address. (Playwright's request interception would do it too, but it
        # drops the body of a request that uploads a file.)
        proxy = {"server": DEAD_PROXY, "bypass": "127.0.0.1"}
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, proxy=proxy)
        try:
            yield browser
        finally:
            browser.close()


def test_swagger_ui_offline_detects_a_face(
    live_server: Server,
    browser,
    tmp_path: Path,
    configured: str,  # noqa: ANN001 - a Browser
) -> None:
    page = browser.new_page()
    origin = urlsplit(live_server.base_url).netloc
    outside: list[str] = []

    def note_outside(request) -> None:  # noqa: ANN001 - a Playwright Request
        if urlsplit(request.url).netloc != origin:
            outside.append(request.url)

    # The cut is real: what the stock FastAPI page loads from its CDN does not arrive.
    from playwright.sync_api import Error as PlaywrightError

    probe = browser.new_page()
    with pytest.raises(PlaywrightError, match="net::ERR_"):
        probe.goto("https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js")
    probe.close()
    page.on("request", note_outside)
    creds: Credentials = make_account()
    photo = tmp_path / "yaoming.jpg"
    shutil.copy(get_settings().models_dir / "yaoming.jpg", photo)

    page.goto(f"{live_server.base_url}/docs")
    page.get_by_role("button", name="Authorize").first.click()
    dialog = page.locator(".modal-ux")
    for name, value in (("api_id", creds.api_id), ("api_secret", creds.api_secret)):
        block = dialog.locator(".auth-container").filter(
            has=page.locator(f"h4 code:text-is('{name}')")
        )
        block.locator("input").fill(value)
        block.locator("button.authorize").click()
    dialog.locator("button.close-modal").click()

    operation = page.locator("#operations-sensetime-face_detection_face_detection_post")
    operation.locator(".opblock-summary").click()
    try_it = operation.get_by_role("button", name="Try it out")
    if try_it.count():  # tryItOutEnabled opens the form already in newer Swagger UIs
        try_it.click()
    operation.locator("input[type=file]").first.set_input_files(str(photo))
    operation.get_by_role("button", name="Execute").click()

    answer = operation.locator(".live-responses-table .response-col_description pre").first
    answer.wait_for(timeout=60_000)
    body = json.loads(answer.inner_text())
    assert body["status"] == "OK", body
    assert len(body["faces"]) == 1
    assert body["faces"][0]["rect"]["right"] > body["faces"][0]["rect"]["left"]
    assert outside == [], f"the page asked outside the server: {outside}"
