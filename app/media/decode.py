"""Turn uploaded image bytes into upright RGB pixels, refusing anything the seed API refuses.

The SenseTime `/face/detection` contract accepts JPG/PNG/BMP/GIF/TIFF up to 5 MB whose sides lie
in (8, 4000] px. Every check that can be made without decoding pixels (byte size, magic bytes,
declared dimensions) is made first, so hostile inputs such as decompression bombs are refused
before Pillow allocates anything. Whatever Pillow raises on bad input becomes `CORRUPT_IMAGE`:
a malformed upload is the client's fault and must never surface as a 500.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from app.config import get_settings
from app.errors import ApiError, bad_request

MIN_SIDE_EXCLUSIVE = 8
MAX_SIDE = 4000

_EXIF_ORIENTATION_TAG = 0x0112
_WHITE = (255, 255, 255)

# Accepted formats by their leading bytes; the value is Pillow's plugin name, so the file is only
# ever parsed by the decoder its magic bytes claim (never by filename or content-type).
_ACCEPTED_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)

# Real image formats the seed does not accept: these get INVALID_IMAGE_FORMAT_OR_SIZE rather than
# CORRUPT_IMAGE so the client learns the file is fine but the format is not.
_REFUSED_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (8, b"WEBP", "WebP"),
    (4, b"ftyp", "HEIF/AVIF"),
    (0, b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (0, b"\xff\x4f\xff\x51", "JPEG 2000"),
    (0, b"\xff\x0a", "JPEG XL"),
    (0, b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"),
    (0, b"\x00\x00\x01\x00", "ICO"),
    (0, b"8BPS", "PSD"),
    (0, b"qoif", "QOI"),
    (0, b"II+\x00", "BigTIFF"),
    (0, b"MM\x00+", "BigTIFF"),
)

# EXIF orientation value -> the transpose that makes the image upright (EXIF 2.3, tag 0x0112).
_ORIENTATION_FIX: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True)
class DecodedImage:
    """Upright RGB pixels plus what the API reports about the original file."""

    rgb: np.ndarray
    width: int
    height: int
    format: str
    exif_orientation: int | None


def decode_image(data: bytes) -> DecodedImage:
    """Decode an upload into upright uint8 RGB (HxWx3), or raise the seed's 400 for it."""
    limit = get_settings().max_image_bytes
    if len(data) > limit:
        raise bad_request("IMAGE_FILE_SIZE_TOO_BIG", f"image exceeds {limit} bytes")
    image_format = _sniff_format(data)
    image = _open_header(data, image_format)
    _check_declared_size(image.size)
    orientation = _exif_orientation(image)
    rgb_image = _load_rgb(image)
    if orientation in _ORIENTATION_FIX:
        rgb_image = rgb_image.transpose(_ORIENTATION_FIX[orientation])
    rgb = np.asarray(rgb_image, dtype=np.uint8)
    height, width = rgb.shape[:2]
    return DecodedImage(rgb, width, height, image_format, orientation)


def _sniff_format(data: bytes) -> str:
    """Name the format from magic bytes alone, so a renamed WebP cannot pass as a JPEG."""
    for magic, name in _ACCEPTED_MAGIC:
        if data.startswith(magic):
            return name
    for offset, magic, name in _REFUSED_MAGIC:
        if data[offset : offset + len(magic)] == magic:
            raise bad_request("INVALID_IMAGE_FORMAT_OR_SIZE", f"unsupported image format: {name}")
    raise bad_request("CORRUPT_IMAGE", "data is not a JPG, PNG, BMP, GIF or TIFF image")


def _open_header(data: bytes, image_format: str) -> Image.Image:
    """Parse only the header, with the one plugin the magic bytes named; pixels stay undecoded.

    Pillow raises DecompressionBombError past 2x its pixel limit; between 1x and 2x it only warns,
    which is harmless here because that limit (~89 Mpx) is far above 4000x4000, so the size check
    that follows refuses every image Pillow would warn about, still before any pixel is decoded.
    """
    if image_format == "JPEG" and not _jpeg_has_end_after_scan(data):
        raise bad_request("CORRUPT_IMAGE", "JPEG data is truncated")
    try:
        return Image.open(io.BytesIO(data), formats=[image_format])
    except Image.DecompressionBombError as exc:
        raise bad_request("INVALID_IMAGE_FORMAT_OR_SIZE", "image dimensions are too large") from exc
    except Exception as exc:
        raise bad_request("CORRUPT_IMAGE", f"unreadable {image_format} header") from exc


def _jpeg_has_end_after_scan(data: bytes) -> bool:
    """Require an EOI marker after the last scan, independent of Pillow's global truncation flag.

    Pillow only refuses truncated JPEGs while `ImageFile.LOAD_TRUNCATED_IMAGES` is off, and that
    flag is process-wide; checking the markers ourselves keeps truncated uploads refused even if
    some other module flips it. Bytes after EOI (a multipart CRLF, say) are still accepted.
    """
    return data.rfind(b"\xff\xd9") > data.rfind(b"\xff\xda")


def _check_declared_size(size: tuple[int, int]) -> None:
    """Enforce 8 < side <= 4000 on the header's dimensions, before any pixel is allocated."""
    width, height = size
    if not (MIN_SIDE_EXCLUSIVE < width <= MAX_SIDE and MIN_SIDE_EXCLUSIVE < height <= MAX_SIDE):
        raise bad_request(
            "INVALID_IMAGE_FORMAT_OR_SIZE",
            f"image is {width}x{height}; each side must be > {MIN_SIDE_EXCLUSIVE} and "
            f"<= {MAX_SIDE} px",
        )


def _exif_orientation(image: Image.Image) -> int | None:
    """The EXIF orientation (1..8) if the file carries a valid one; a broken EXIF block is ignored
    because the pixels are still usable."""
    try:
        value = image.getexif().get(_EXIF_ORIENTATION_TAG)
    except Exception:
        return None
    return value if isinstance(value, int) and 1 <= value <= 8 else None


def _load_rgb(image: Image.Image) -> Image.Image:
    """Decode the first frame/page and convert it to RGB; decoder failures are CORRUPT_IMAGE."""
    try:
        image.seek(0)
        image.load()
        return _to_rgb(image)
    except ApiError:
        raise
    except Exception as exc:
        raise bad_request("CORRUPT_IMAGE", "image data is corrupt or truncated") from exc


def _to_rgb(image: Image.Image) -> Image.Image:
    """Flatten transparency onto white (what a viewer shows) and scale 16-bit samples to 8-bit."""
    if image.mode == "I" or image.mode.startswith("I;16"):
        return _wide_gray_to_rgb(image)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_WHITE, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode == "RGB":
        return image
    try:
        return image.convert("RGB")
    except ValueError as exc:
        raise bad_request(
            "INVALID_IMAGE_FORMAT_OR_SIZE", f"unsupported color mode: {image.mode}"
        ) from exc


def _wide_gray_to_rgb(image: Image.Image) -> Image.Image:
    """Map 16-bit grayscale (Pillow's I;16/I modes) onto 0..255; Pillow's own convert clips it."""
    samples = np.asarray(image, dtype=np.float64)
    gray = np.clip(samples / 257.0, 0.0, 255.0).round().astype(np.uint8)
    return Image.fromarray(np.stack([gray] * 3, axis=-1))
