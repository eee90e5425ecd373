"""Swagger UI in a real browser with the network cut off: /docs loads from the server alone, and
"Try it out" on /face/detection uploads a photo and shows its face.

The browser and the page's watch (requests leaving the server) are tests/utils/browser.py's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from app.config import get_settings
from tests.conftest import Credentials, make_account
from tests.servers import Server
from tests.utils.browser import watched_page

pytestmark = pytest.mark.slow


def test_swagger_ui_offline_detects_a_face(
    live_server: Server,
    browser,
    tmp_path: Path,
    configured: str,  # noqa: ANN001 - a Browser
) -> None:
    # The cut is real: what the stock FastAPI page loads from its CDN does not arrive.
    from playwright.sync_api import Error as PlaywrightError

    probe = browser.new_page()
    with pytest.raises(PlaywrightError, match="net::ERR_"):
        probe.goto("https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js")
    probe.close()
    page, watch = watched_page(browser, live_server.base_url)
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
    assert watch.outside == [], f"the page asked outside the server: {watch.outside}"
