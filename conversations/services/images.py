"""Checking and preparing an uploaded image, by its content alone: never the file name or the browser's type.

Accepted: PNG, JPEG, WEBP, GIF (an animated one keeps its first frame) and HEIC/HEIF from phones (converted to
JPEG). Everything else is refused with a message a person can act on, before anything is written to disk.

Every accepted image is decoded and encoded afresh: the EXIF orientation is applied, then everything but the
pixels is dropped (EXIF with GPS, XMP, comments, text chunks; a colour profile is converted to sRGB first), and
the image is scaled down to what the provider would use anyway (CHAT_IMAGE_MAX_SIDE, CHAT_IMAGE_SHORT_SIDE;
512 px for CHAT_IMAGE_DETAIL=low). The size is checked from the header before any pixel is decoded, so a small
file that claims 20,000 x 20,000 pixels (a decompression bomb) costs nothing.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import BinaryIO

from django.conf import settings
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from conversations.services.errors import InvalidInput, TooLarge

try:  # HEIC/HEIF (iPhone photos): optional, pillow-heif registers itself as a Pillow plugin.
    import pillow_heif

    pillow_heif.register_heif_opener()
    HEIF_SUPPORTED = True
except ImportError:  # pragma: no cover - pillow-heif is a dependency; this is for a trimmed install
    HEIF_SUPPORTED = False

LOW_DETAIL_SIDE = 512
JPEG_QUALITY = 88
READ_CHUNK = 64 * 1024
# ISO base media "ftyp" brands of HEIF images (HEIC from phones, and the generic HEIF ones).
HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"}
ACCEPTED = "PNG, JPEG, WEBP, GIF or HEIC"


class ImageRejected(InvalidInput):
    """The upload is not an image we accept."""

    code = "invalid_image"


class ImageTooLarge(ImageRejected, TooLarge):
    """More bytes than CHAT_MAX_IMAGE_BYTES."""

    code = "image_too_large"

    def __init__(self) -> None:
        super().__init__(
            f"The image is larger than {_megabytes(settings.CHAT_MAX_IMAGE_BYTES)}. Send a smaller one."
        )


@dataclass(frozen=True)
class PreparedImage:
    data: bytes  # the encoded file to store and send
    mime: str
    extension: str
    width: int
    height: int
    sha256: str
    notice: str = ""  # something the person should know (an animated GIF lost its animation)


def _megabytes(n: int) -> str:
    return f"{n / (1024 * 1024):g} MB"


def read_capped(stream: BinaryIO, limit: int | None = None) -> bytes:
    """The whole stream, refusing it as soon as it passes `limit` bytes (CHAT_MAX_IMAGE_BYTES)."""
    limit = settings.CHAT_MAX_IMAGE_BYTES if limit is None else limit
    buffer = io.BytesIO()
    while chunk := stream.read(READ_CHUNK):
        if buffer.tell() + len(chunk) > limit:
            raise ImageTooLarge()
        buffer.write(chunk)
    return buffer.getvalue()


def sniff(head: bytes) -> str:
    """The Pillow format name the first bytes announce, or ImageRejected saying what the file looks like."""
    if not head:
        raise ImageRejected("The file is empty.", code="empty_file")
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in HEIF_BRANDS:
            if not HEIF_SUPPORTED:
                raise ImageRejected(
                    "HEIC photos can't be read on this server. Export the photo as JPEG and attach that."
                )
            return "HEIF"
        if brand in (b"avif", b"avis"):
            raise ImageRejected(f"AVIF images aren't supported. Use {ACCEPTED}.")
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<svg", b"<?xml", b"<!doctype svg")) or b"<svg" in text[:1024]:
        raise ImageRejected(f"SVG images aren't accepted (they can carry scripts). Use {ACCEPTED}.")
    raise ImageRejected(f"That file isn't an image this site can read. Use {ACCEPTED}.")


def target_size(width: int, height: int, detail: str | None = None) -> tuple[int, int]:
    """What the provider scales an image to: fit within the max square, then the short side down to the
    short-side limit (high/auto); or within 512 x 512 (low). Never scaled up."""
    detail = detail or settings.CHAT_IMAGE_DETAIL
    scale = 1.0
    if detail == "low":
        scale = min(1.0, LOW_DETAIL_SIDE / max(width, height))
    else:
        scale = min(1.0, settings.CHAT_IMAGE_MAX_SIDE / max(width, height))
        short = min(width, height) * scale
        if short > settings.CHAT_IMAGE_SHORT_SIDE:
            scale *= settings.CHAT_IMAGE_SHORT_SIDE / short
    if scale >= 1.0:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))


def _to_srgb(image: Image.Image) -> Image.Image:
    """Pixels converted from an embedded colour profile (Display P3 phone photos) to sRGB; the profile goes."""
    icc = image.info.get("icc_profile")
    if not icc or image.mode not in ("RGB", "RGBA"):
        return image
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode=image.mode)
    except (ImageCms.PyCMSError, OSError, ValueError):
        return image  # a broken profile: keep the pixels as they are


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)


def prepare(data: bytes) -> PreparedImage:
    """Check `data` and return the image to store, or raise ImageRejected. Nothing is written anywhere."""
    if len(data) > settings.CHAT_MAX_IMAGE_BYTES:
        raise ImageTooLarge()
    kind = sniff(data[:64])
    damaged = ImageRejected(
        "The image is damaged or incomplete (the upload may have been cut off). Try another copy.",
        code="damaged_image",
    )
    try:
        image = Image.open(io.BytesIO(data), formats=[kind])
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise damaged from exc
    except Image.DecompressionBombError as exc:
        raise _too_many_pixels() from exc
    width, height = image.size
    if width < 1 or height < 1:
        raise damaged
    if width * height > settings.CHAT_MAX_IMAGE_PIXELS:
        raise _too_many_pixels(width, height)

    notice = ""
    if getattr(image, "is_animated", False):
        notice = "This image is animated: the model sees its first frame only."
    try:
        image.seek(0)
        target = target_size(width, height)
        if kind == "JPEG" and target != (width, height):
            # Decode at a reduced scale straight away (1/2, 1/4, 1/8, never below the target): less memory.
            image.draft("RGB", target)
        image.load()
        image = ImageOps.exif_transpose(image)
        image = _normalise(image)
    except Image.DecompressionBombError as exc:
        raise _too_many_pixels() from exc
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        raise damaged from exc

    target = target_size(*image.size)
    if target != image.size:
        image = image.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)

    encoded, mime, extension = _encode(image, kind)
    return PreparedImage(
        data=encoded,
        mime=mime,
        extension=extension,
        width=image.width,
        height=image.height,
        sha256=hashlib.sha256(encoded).hexdigest(),
        notice=notice,
    )


def _too_many_pixels(width: int | None = None, height: int | None = None) -> ImageRejected:
    size = f" ({width:,} x {height:,})" if width and height else ""
    megapixels = settings.CHAT_MAX_IMAGE_PIXELS / 1_000_000
    return ImageRejected(
        f"The image has too many pixels{size}: the limit is {megapixels:g} megapixels. Send a smaller one.",
        code="image_too_many_pixels",
    )


def _normalise(image: Image.Image) -> Image.Image:
    """RGB, or RGBA when the image has transparency; in sRGB; with no metadata left in `info`."""
    alpha = _has_alpha(image)
    if image.mode not in ("RGB", "RGBA") or (image.mode == "RGBA") != alpha:
        image = image.convert("RGBA" if alpha else "RGB")
    image = _to_srgb(image)
    clean = image.copy()
    clean.info = {}  # EXIF (GPS...), XMP, ICC, comments, PNG text: nothing but pixels is kept
    return clean


def _encode(image: Image.Image, kind: str) -> tuple[bytes, str, str]:
    """Photos stay JPEG (HEIC becomes JPEG); PNG and GIF frames become PNG (lossless: screenshots keep sharp
    text); WEBP stays WEBP. Nothing but the pixels is written."""
    out = io.BytesIO()
    if kind in ("JPEG", "HEIF"):
        if image.mode != "RGB":
            # A JPEG has no transparency: put it on white, as a viewer would show it.
            background = Image.new("RGB", image.size, (255, 255, 255))
            background.paste(image, mask=image.getchannel("A"))
            image = background
        image.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True, progressive=True)
        return out.getvalue(), "image/jpeg", "jpg"
    if kind == "WEBP":
        image.save(out, "WEBP", quality=JPEG_QUALITY, method=4)
        return out.getvalue(), "image/webp", "webp"
    image.save(out, "PNG", compress_level=6)
    return out.getvalue(), "image/png", "png"


def image_tokens_estimate(width: int, height: int, model_id: str = "") -> int:
    """Prompt tokens one stored image costs at the site's detail setting (see llm/tokens.py)."""
    from conversations.llm.tokens import image_tokens

    return image_tokens(width, height, settings.CHAT_IMAGE_DETAIL, model_id)
