"""decode_image against real files: accepted formats, every refusal code, EXIF and bombs."""

from __future__ import annotations

import io
import random
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps

from app.config import DEFAULT_MAX_IMAGE_BYTES as MAX_IMAGE_BYTES
from app.errors import ApiError
from app.media.decode import decode_image
from tests.conftest import SHARED_DATA, require_research_photos

CELEBA = SHARED_DATA / "celeba-dev" / "images"


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def refusal(data: bytes) -> ApiError:
    with pytest.raises(ApiError) as caught:
        decode_image(data)
    assert caught.value.http_status == 400
    assert caught.value.reason
    return caught.value


def marked_image(width: int = 40, height: int = 20) -> Image.Image:
    """An image whose every orientation is distinguishable: distinct colour in each corner."""
    image = Image.new("RGB", (width, height), (128, 128, 128))
    for (x, y), colour in zip(
        [(0, 0), (width - 4, 0), (0, height - 4), (width - 4, height - 4)],
        [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)],
        strict=True,
    ):
        image.paste(colour, (x, y, x + 4, y + 4))
    return image


@pytest.fixture(scope="module")
def photo_bytes() -> bytes:
    require_research_photos("celeba-dev", "images", "000093.jpg")
    return (CELEBA / "000093.jpg").read_bytes()


def test_real_photo_decodes_to_rgb(photo_bytes: bytes) -> None:
    decoded = decode_image(photo_bytes)
    reference = Image.open(io.BytesIO(photo_bytes))
    assert decoded.format == "JPEG"
    assert (decoded.width, decoded.height) == reference.size
    assert decoded.rgb.shape == (reference.height, reference.width, 3)
    assert decoded.rgb.dtype == np.uint8
    assert decoded.exif_orientation is None
    assert np.array_equal(decoded.rgb, np.asarray(reference.convert("RGB")))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "BMP", "GIF", "TIFF"])
def test_each_accepted_format(fmt: str) -> None:
    source = marked_image()
    decoded = decode_image(encode(source, fmt))
    assert decoded.format == fmt
    assert decoded.rgb.shape == (20, 40, 3)
    if fmt in ("PNG", "BMP", "TIFF"):
        assert np.array_equal(decoded.rgb, np.asarray(source))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(orientation: int) -> None:
    source = marked_image()
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(source, "PNG", exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))

    decoded = decode_image(data)

    assert decoded.exif_orientation == orientation
    swapped = orientation >= 5
    assert (decoded.width, decoded.height) == ((20, 40) if swapped else (40, 20))
    assert decoded.rgb.shape == (decoded.height, decoded.width, 3)
    assert np.array_equal(decoded.rgb, expected)


def test_exif_orientation_on_real_jpeg(photo_bytes: bytes) -> None:
    photo = Image.open(io.BytesIO(photo_bytes))
    exif = Image.Exif()
    exif[0x0112] = 6
    decoded = decode_image(encode(photo, "JPEG", exif=exif, quality=95))
    assert decoded.exif_orientation == 6
    assert (decoded.width, decoded.height) == (photo.height, photo.width)


def test_png_alpha_is_composited_on_white() -> None:
    image = Image.new("RGBA", (20, 20), (255, 0, 0, 255))
    image.paste((0, 0, 255, 0), (0, 0, 10, 20))
    decoded = decode_image(encode(image, "PNG"))
    assert decoded.rgb[5, 2].tolist() == [255, 255, 255]
    assert decoded.rgb[5, 15].tolist() == [255, 0, 0]


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [("P", "PNG"), ("L", "PNG"), ("LA", "PNG"), ("1", "BMP"), ("CMYK", "JPEG"), ("CMYK", "TIFF")],
)
def test_other_colour_modes_become_rgb(mode: str, fmt: str) -> None:
    decoded = decode_image(encode(Image.new(mode, (16, 12)), fmt))
    assert decoded.rgb.shape == (12, 16, 3)
    assert decoded.rgb.dtype == np.uint8


def test_sixteen_bit_grayscale_is_scaled_not_clipped() -> None:
    image = Image.new("I;16", (16, 16), 0)
    image.putpixel((0, 0), 65535)
    image.putpixel((1, 0), 32896)
    decoded = decode_image(encode(image, "PNG"))
    assert decoded.rgb[0, 0].tolist() == [255, 255, 255]
    assert decoded.rgb[0, 1].tolist() == [128, 128, 128]
    assert decoded.rgb[0, 2].tolist() == [0, 0, 0]


def test_animated_gif_gives_first_frame() -> None:
    frames = [Image.new("RGB", (20, 20), colour) for colour in [(255, 0, 0), (0, 0, 255)]]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    decoded = decode_image(data)
    assert decoded.format == "GIF"
    assert decoded.rgb[10, 10].tolist() == [255, 0, 0]


def test_gif_transparency_becomes_white() -> None:
    image = Image.new("P", (20, 20), 1)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    decoded = decode_image(encode(image, "GIF", transparency=1))
    assert decoded.rgb[10, 10].tolist() == [255, 255, 255]


def test_multipage_tiff_gives_first_page() -> None:
    pages = [Image.new("RGB", (30, 20), (0, 255, 0)), Image.new("RGB", (50, 50), (255, 0, 0))]
    decoded = decode_image(encode(pages[0], "TIFF", save_all=True, append_images=pages[1:]))
    assert (decoded.width, decoded.height) == (30, 20)
    assert decoded.rgb[5, 5].tolist() == [0, 255, 0]


@pytest.mark.parametrize(
    ("size", "accepted"),
    [
        ((8, 8), False),
        ((9, 9), True),
        ((8, 100), False),
        ((100, 8), False),
        ((4000, 9), True),
        ((9, 4000), True),
        ((4001, 9), False),
        ((9, 4001), False),
    ],
)
def test_side_limits(size: tuple[int, int], accepted: bool) -> None:
    data = encode(Image.new("L", size), "PNG")
    if accepted:
        assert (decode_image(data).width, decode_image(data).height) == size
    else:
        assert refusal(data).status == "INVALID_IMAGE_FORMAT_OR_SIZE"


def png_declaring(width: int, height: int) -> bytes:
    """A tiny valid-looking PNG whose IHDR claims `width` x `height` (a decompression bomb)."""
    data = bytearray(encode(Image.new("L", (16, 16)), "PNG"))
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


# Pillow warns (rather than raises) between 1x and 2x its pixel limit; decode refuses those anyway.
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("side", [5000, 12000, 30000, 100000])
def test_decompression_bomb_refused_without_allocating(side: int) -> None:
    data = png_declaring(side, side)
    assert len(data) < 1000
    tracemalloc.start()
    try:
        error = refusal(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert error.status == "INVALID_IMAGE_FORMAT_OR_SIZE"
    assert peak < 2 * 1024 * 1024


def test_truncated_jpeg_is_corrupt(photo_bytes: bytes) -> None:
    assert refusal(photo_bytes[: len(photo_bytes) * 2 // 3]).status == "CORRUPT_IMAGE"


def test_truncated_jpeg_refused_even_if_pillow_tolerates_truncation(
    photo_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    assert refusal(photo_bytes[: len(photo_bytes) - 100]).status == "CORRUPT_IMAGE"


@pytest.mark.parametrize("tail", [b"\r\n", b"\r\n--boundary--\r\n", bytes(range(256)) * 4])
def test_jpeg_with_trailing_bytes_is_accepted(photo_bytes: bytes, tail: bytes) -> None:
    assert decode_image(photo_bytes + tail).format == "JPEG"


def test_truncated_png_is_corrupt() -> None:
    data = encode(marked_image(200, 200), "PNG", compress_level=0)
    assert refusal(data[: len(data) // 2]).status == "CORRUPT_IMAGE"


@pytest.mark.parametrize(
    "data",
    [b"", b"hello world, not an image", b"\xff\xd8\xff" + b"\x00" * 50, b"GIF89a" + b"\x01" * 9],
)
def test_non_images_are_corrupt(data: bytes) -> None:
    assert refusal(data).status == "CORRUPT_IMAGE"


def test_webp_is_refused_as_format() -> None:
    error = refusal(encode(Image.new("RGB", (20, 20)), "WEBP"))
    assert error.status == "INVALID_IMAGE_FORMAT_OR_SIZE"
    assert "WebP" in (error.reason or "")


def test_more_than_five_megabytes_refused(photo_bytes: bytes) -> None:
    padded = photo_bytes + b"\x00" * (MAX_IMAGE_BYTES - len(photo_bytes))
    assert decode_image(padded).format == "JPEG"
    assert refusal(padded + b"\x00").status == "IMAGE_FILE_SIZE_TOO_BIG"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "BMP", "TIFF"])
def test_mangled_files_never_escape_as_other_errors(fmt: str) -> None:
    """Random byte corruption must end in a decoded image or a 400, never another exception."""
    original = encode(marked_image(64, 48), fmt)
    rng = random.Random(fmt)
    for _ in range(60):
        data = bytearray(original)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            decoded = decode_image(bytes(data))
        except ApiError as error:
            assert error.http_status == 400
        else:
            assert decoded.rgb.shape == (decoded.height, decoded.width, 3)
