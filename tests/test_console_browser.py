"""The web console in a real browser with the network cut off, on both databases: sign in,
analyse a photo and count the boxes drawn, create a person from two photos, put it in a group,
match a third photo of the same person and find it first, delete it.

The page must log no console error and throw no exception, and ask nothing of another host
(tests/utils/browser.py). Each step saves a screenshot to $FACESRV_SCREENSHOTS (default
/tmp/facesrv-console-screenshots), named by database and step: look at them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from app.config import get_settings
from app.db.session import session_scope
from app.domain import Dialect
from app.services import credentials
from tests.conftest import DEFAULT_QUOTA, make_account
from tests.photos import CELEBA, identity_photos
from tests.servers import Server
from tests.utils.browser import watched_page

pytestmark = pytest.mark.slow

SCREENSHOTS = Path(os.environ.get("FACESRV_SCREENSHOTS", "/tmp/facesrv-console-screenshots"))
TIMEOUT_MS = 60_000
VIEWPORT = {"width": 1360, "height": 860}
ANALYSED = "gdp.jpg"  # the model pack's group photo: six faces
PERSON = "Celeb 3x"


def _photos(tmp_path: Path) -> list[Path]:
    """Three CelebA photos of one identity (two to enrol, one to match), and the group photo."""
    names = list(identity_photos(3))
    copies = []
    for index, name in enumerate(names):
        copies.append(tmp_path / f"person-{index + 1}.jpg")
        shutil.copy(CELEBA / "images" / name, copies[-1])
    copies.append(tmp_path / ANALYSED)
    shutil.copy(get_settings().models_dir / ANALYSED, copies[-1])
    return copies


def _api(server: Server, path: str, creds: dict[str, str], **params: object) -> dict:
    with server.client() as client:
        return client.post(path, data={**creds, **params}).json()


def test_console_analyse_enrol_match_delete(
    live_server: Server,
    browser,  # noqa: ANN001 - a Playwright Browser
    tmp_path: Path,
    configured: str,
) -> None:
    first, second, third, crowd = _photos(tmp_path)
    creds = make_account()
    database = configured.split(":", 1)[0].split("+", 1)[0]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page, watch = watched_page(browser, live_server.base_url, viewport=VIEWPORT)
    page.set_default_timeout(TIMEOUT_MS)

    def shot(step: str) -> None:
        page.wait_for_load_state("networkidle")
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(SCREENSHOTS / f"{database}-{step}.png"))

    # Sign in.
    page.goto(f"{live_server.base_url}/console")
    page.get_by_label("API ID").fill(creds.api_id)
    page.get_by_label("API secret").fill(creds.api_secret)
    shot("1-signin")
    page.get_by_role("button", name="Sign in").click()
    page.locator(".sidebar").wait_for()
    assert page.locator("#who").inner_text() == creds.api_id

    # Analyse: one box per face the API found, and the raw JSON beside them.
    page.locator(".dropzone input[type=file]").set_input_files(str(crowd))
    page.locator("#face-count").wait_for()
    boxes = page.locator("svg.overlay .face-box")
    assert boxes.count() == 6
    assert page.locator(".face-card").count() == 6
    assert '"face_id"' in page.locator("pre.json").inner_text()
    page.get_by_role("button", name="106 points").click()
    assert page.locator("svg.overlay .landmark").count() == 6 * 106
    page.locator(".face-card").first.click()
    shot("2-analyse")

    # People: a person from two photos, shown with both face thumbnails.
    page.get_by_role("link", name="People").click()
    page.get_by_role("button", name="New person").click()
    page.locator(".create-panel input[name=name]").fill(PERSON)
    page.locator(".create-panel input[type=file]").set_input_files([str(first), str(second)])
    page.get_by_role("button", name="Create person").click()
    page.locator(".face-tile .thumb img").nth(1).wait_for()
    assert page.locator(".face-tile").count() == 2
    shot("3-person")

    # A group holding it.
    page.get_by_role("link", name="‹ All persons").click()
    page.locator(".entity-card .thumb img").first.wait_for()
    assert page.locator(".entity-card").filter(has_text="2 faces").count() == 1
    shot("4-persons")
    page.get_by_role("tab", name="Groups").click()
    page.get_by_role("button", name="New group").click()
    page.locator(".create-panel input[name=name]").fill("Visitors")
    page.get_by_role("button", name="Create group").click()
    picker = page.get_by_label("Person to add")
    page.locator("select[name=person] option", has_text=PERSON).wait_for(state="attached")
    picker.select_option(label=PERSON)
    page.get_by_role("button", name="Add to group").click()
    page.locator("table.table tbody tr .thumb img").first.wait_for()
    shot("5-group")

    # A faceset of the same two photos.
    page.get_by_role("link", name="‹ All groups").click()
    page.get_by_role("tab", name="Facesets").click()
    page.get_by_role("button", name="New faceset").click()
    page.locator(".create-panel input[name=name]").fill("Lobby camera")
    page.locator(".create-panel input[type=file]").set_input_files([str(first), str(second)])
    page.get_by_role("button", name="Create faceset").click()
    page.locator(".face-tile .thumb img").nth(1).wait_for()

    # Match the third photo against the group: that person first, with what 0.x means.
    page.get_by_role("link", name="Match").click()
    page.locator("select[name=target] option", has_text="Visitors").wait_for(state="attached")
    page.get_by_label("Group or faceset").select_option(label="Visitors")
    page.locator(".dropzone input[type=file]").set_input_files(str(third))
    page.locator(".candidate").first.wait_for()
    assert page.locator(".candidate-name").first.inner_text() == PERSON
    assert "FAR" in page.locator(".candidate").first.inner_text()
    page.locator(".candidate .thumb img").first.wait_for()
    shot("6-match")
    page.get_by_label("Group or faceset").select_option(label="Lobby camera")
    page.locator(".dropzone input[type=file]").set_input_files(str(third))
    page.get_by_text("POST /face/search").wait_for()
    assert page.locator(".candidate").count() == 2
    assert page.locator(".candidate .badge.same").count() == 2
    page.locator(".candidate .thumb img").nth(1).wait_for()
    shot("6-match-faceset")

    # Account: usage against quotas.
    page.get_by_role("link", name="Account").click()
    page.locator("[data-usage=persons]").wait_for()
    assert "1 of 80" in page.locator("[data-usage=persons]").inner_text()
    shot("7-account")

    # Delete the person, after confirming.
    page.get_by_role("link", name="People").click()
    page.locator(".entity-card", has_text=PERSON).get_by_role("button", name="Delete").click()
    page.locator("dialog#confirm[open]").wait_for()
    shot("8-confirm-delete")
    page.locator("dialog#confirm").get_by_role("button", name="Delete").click()
    page.get_by_text("No persons yet").wait_for()
    shot("9-deleted")
    assert _api(live_server, "/info/list_persons", creds.query)["persons"] == []

    watch.assert_clean()


def _signed_in(browser, server: Server, creds) -> tuple:  # noqa: ANN001 - Browser, Credentials
    page, watch = watched_page(browser, server.base_url, viewport=VIEWPORT)
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{server.base_url}/console")
    page.get_by_label("API ID").fill(creds.api_id)
    page.get_by_label("API secret").fill(creds.api_secret)
    page.get_by_role("button", name="Sign in").click()
    page.locator(".sidebar").wait_for()
    return page, watch


class ApiCalls:
    """The API calls a page makes: every POST to the server (the public API's and the
    thumbnails'), each one counted against the account's rate limit."""

    def __init__(self, page) -> None:  # noqa: ANN001 - a Playwright Page
        self.paths: list[str] = []
        page.on("request", self._seen)

    def _seen(self, request) -> None:  # noqa: ANN001 - a Playwright Request
        if request.method == "POST":
            self.paths.append(urlsplit(request.url).path)

    def take(self) -> list[str]:
        taken, self.paths = self.paths, []
        return taken


# The default rate limit, 50q/10s, is the budget of one window. A page must stay well inside
# it so that a user clicking from page to page does not meet RATE_LIMIT_EXCEEDED: the seed's
# listings carry ids and names only, so a card costs one info call (a group's two: its persons,
# then its first person's faces) and the page's thumbnails one call together.
PERSONS_PAGE_CALLS = 14  # list_persons, 12 x info/person, one thumbnails call (was 25)
GROUPS_PAGE_CALLS = 26  # list_groups, 12 x info/group, 12 x info/person, one thumbnails (was 37)


def test_console_pages_a_large_account(
    live_server: Server,
    browser,  # noqa: ANN001 - a Playwright Browser
) -> None:
    """13 persons: 12 on the first page, the 13th on the next; persons without a face show the
    placeholder. 12 groups of one person each. What a page costs in calls, and that the tab
    keeps the thumbnails it was sent."""
    creds = make_account(quota={**DEFAULT_QUOTA, "groups": 12})
    crowd = get_settings().models_dir / ANALYSED
    faces = []
    for _ in range(2):  # six faces a detection, twelve in all
        with live_server.client() as client:
            body = client.post(
                "/face/detection", data=creds.query, files={"file": crowd.read_bytes()}
            )
        faces += [face["face_id"] for face in body.json()["faces"]]
    names = [f"Person {index:02d}" for index in range(13)]
    persons = []
    for index, name in enumerate(names):
        face = {"face_id": faces[index]} if index < len(faces) else {}
        created = _api(live_server, "/person/create", creds.query, name=name, **face)
        assert created["status"] == "OK", created
        persons.append(created["person_id"])
    for index, person in enumerate(persons[:12]):
        created = _api(
            live_server, "/group/create", creds.query, name=f"Group {index:02d}", person_id=person
        )
        assert created["status"] == "OK", created
    page, watch = _signed_in(browser, live_server, creds)
    calls = ApiCalls(page)

    def settled() -> list[str]:
        page.wait_for_load_state("networkidle")
        return calls.take()

    page.goto(f"{live_server.base_url}/console#people/persons")
    cards = page.locator(".entity-card")
    page.get_by_text("1–12").wait_for()
    assert cards.count() == 12
    page.locator(".entity-card .thumb img").nth(11).wait_for()
    persons_page = settled()
    assert persons_page.count("/console/api/thumbnails") == 1
    assert len(persons_page) <= PERSONS_PAGE_CALLS, persons_page

    page.get_by_role("button", name="Next ›").click()
    page.get_by_text("13–13").wait_for()
    assert cards.all_inner_texts()[0].startswith(names[12])
    assert page.get_by_role("button", name="Next ›").is_disabled()
    page.wait_for_load_state("networkidle")
    assert page.locator(".entity-card .thumb.placeholder").count() == 1
    assert settled() == ["/info/list_persons", "/info/person"]  # no face, no thumbnail asked

    page.get_by_role("tab", name="Groups").click()
    page.locator(".entity-card .thumb img").nth(11).wait_for()
    assert page.locator(".entity-card").filter(has_text="1 person").count() == 12
    # The groups' faces are the persons': kept in the tab, not asked for again.
    assert "/console/api/thumbnails" not in settled()

    page.reload()  # a new tab's page: nothing kept
    page.locator(".entity-card .thumb img").nth(11).wait_for()
    groups_page = settled()
    assert groups_page.count("/console/api/thumbnails") == 1
    assert len(groups_page) <= GROUPS_PAGE_CALLS, groups_page
    watch.assert_clean()


def test_console_shows_the_apis_refusal(
    live_server: Server,
    browser,  # noqa: ANN001 - a Playwright Browser
) -> None:
    """A wrong secret: the sign-in form says what the API said, and nothing is kept. A secret
    rotated during the session signs the tab out, saying why."""
    creds = make_account()
    page, watch = watched_page(browser, live_server.base_url)
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{live_server.base_url}/console")
    page.get_by_label("API ID").fill(creds.api_id)
    page.get_by_label("API secret").fill("not the secret")
    page.get_by_role("button", name="Sign in").click()
    error = page.locator("#signin-error")
    error.wait_for()
    assert error.inner_text() == "UNAUTHORIZED: invalid api_id or api_secret"
    assert page.evaluate("sessionStorage.length") == 0

    page.get_by_label("API secret").fill(creds.api_secret)
    page.get_by_role("button", name="Sign in").click()
    page.locator(".sidebar").wait_for()
    with session_scope() as db:
        credentials.rotate_secret(db, credentials.find(db, Dialect.SENSETIME, creds.api_id))
    page.get_by_role("link", name="Account").click()
    error.wait_for()
    assert error.inner_text() == "Signed out: UNAUTHORIZED: invalid api_id or api_secret"
    assert page.evaluate("sessionStorage.length") == 0
    # Chromium itself logs the refused calls; nothing else may be logged.
    assert all("status of 401" in line for line in watch.console_errors), watch.console_errors
    watch.console_errors.clear()
    watch.assert_clean()


def test_console_placeholders_without_thumbnails(
    browser,  # noqa: ANN001 - a Playwright Browser
    tmp_path: Path,
    configured: str,
) -> None:
    """FACESRV_THUMBNAILS=0: faces keep no crop, and the console shows placeholders, quietly."""
    server = Server(configured, tmp_path / "server", env={"FACESRV_THUMBNAILS": "0"})
    try:
        creds = make_account()
        photo = get_settings().models_dir / "yaoming.jpg"
        with server.client() as client:
            detected = client.post(
                "/face/detection", data=creds.query, files={"file": photo.read_bytes()}
            ).json()
        face_id = detected["faces"][0]["face_id"]
        person = _api(server, "/person/create", creds.query, name="No crop", face_id=face_id)
        thumbs = httpx.post(
            f"{server.base_url}/console/api/thumbnails", data={**creds.query, "face_ids": face_id}
        )
        assert thumbs.json()["thumbnails"] == {face_id: None}

        page, watch = _signed_in(browser, server, creds)
        page.goto(f"{server.base_url}/console#people/person/{person['person_id']}")
        page.locator(".face-tile").wait_for()
        page.wait_for_load_state("networkidle")
        assert page.locator(".face-tile .thumb.placeholder").count() == 1
        assert page.locator(".face-tile .thumb img").count() == 0
        watch.assert_clean()
    finally:
        server.stop()
