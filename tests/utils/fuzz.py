"""What the fuzz tests of every dialect share: hostile values, urls, images, endpoint lists."""

from __future__ import annotations

import io
from urllib.parse import quote as _url_quote

from fastapi import APIRouter
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from PIL import Image

from app.config import get_settings
from tests.conftest import research_photos_present
from tests.photos import celeba_bytes, celeba_identities


def endpoints(*routers: APIRouter) -> list[tuple[str, str]]:
    """(method, path) of every route of a dialect's routers."""
    routes = [route for router in routers for route in router.routes if isinstance(route, APIRoute)]
    return sorted((method, route.path) for route in routes for method in route.methods)


def fuzz_settings(examples: int) -> settings:
    """Hypothesis as the fuzz tests run it: no deadline (real HTTP), no example database (CI
    starts clean), the failing example printed so it can be replayed."""
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def quote(text: str) -> str:
    return _url_quote(text.encode("utf-8", "surrogatepass"), safe="")


HOSTILE_URLS = [
    "http://127.0.0.1/x.jpg",
    "http://[::1]/x.jpg",
    "http://169.254.169.254/latest/meta-data/",
    "http://0x7f.1/",
    "http://[::ffff:127.0.0.1]/",
    "http://localhost:0/",
    "http://[::1",
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_INFO",
    "http://",
    "http:// /",
    "https://user:pass@127.0.0.1:99999/",
    "http://\u0000/",
    "ftp://x/",
]


def jpeg(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (120, 90, 60)).save(out, "JPEG")
    return out.getvalue()


def _a_face_photo() -> bytes:
    """The first CelebA identity's first photo; without the research photo set, the model pack's
    yaoming.jpg: fuzzing needs a real face, not an identity, so these tests run on a fresh clone."""
    if research_photos_present("celeba-dev"):
        return celeba_bytes(next(iter(celeba_identities().values()))[0])
    return (get_settings().models_dir / "yaoming.jpg").read_bytes()


PHOTO = _a_face_photo()
IMAGES = [PHOTO, PHOTO[: len(PHOTO) // 2], PHOTO[:10], jpeg(1, 1), jpeg(4000, 3), b"GIF89a"]

scalars = st.one_of(
    st.text(max_size=40),
    st.text(
        alphabet=st.sampled_from("\x00\ud800\udfff\u200b\ufeff\U0001f600,[]{}\"'\\ %&="), max_size=8
    ),
    st.integers(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.just("9" * 5000),
    st.just("x" * 20_000),
    st.sampled_from(HOSTILE_URLS),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)
