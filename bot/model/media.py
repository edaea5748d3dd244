"""Images and PDFs made fit for a model call: pure work on bytes, no Discord, no I/O.

Images are decoded with Pillow only after their header passed the pixel cap (a file whose header
claims 30000×30000 is never decoded), turned upright by their EXIF orientation, shrunk so the
long side is at most the cap, and re-encoded (JPEG, or PNG when the image has transparency):
the metadata (EXIF, GPS, comments) is not copied. An animated GIF gives its first frame. The
result is a data URL, `data:image/…;base64,…`, the one form every OpenAI-compatible server
takes (Discord's CDN links expire, and local servers may not fetch URLs at all): OpenAI's
`image_url` part, which vLLM, llama.cpp's llama-server (with `--mmproj`), Ollama's /v1 and
LM Studio (JPEG, PNG and WebP only: hence JPEG or PNG out) document as they do.

PDFs are read with pypdf: the text of at most `max_pages` pages and `max_chars` characters,
the cut marked. These calls are CPU work: callers run them off the event loop.
"""

from __future__ import annotations

import base64
import io
import math
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_TYPES = {
    "image/png": "PNG",
    "image/jpeg": "JPEG",
    "image/webp": "WEBP",
    "image/gif": "GIF",
}
"""The image types sent to a model (by content type), and Pillow's name of each format."""
IMAGE_SUFFIXES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"} | {
    ".webp": "image/webp",
    ".gif": "image/gif",
}
IMAGE_SIDE_LIMIT = 2048  # IMAGE_MAX_SIDE is never above this
JPEG_QUALITY = 85

# The token estimate of one image, as OpenAI counts a "high detail" image: scaled to fit in
# 2048×2048, then so that its short side is at most 768; then 85 tokens plus 170 per 512-px
# tile it covers. Other servers count differently (llama.cpp's projectors take a fixed few
# hundred per image); this is the upper end and it is what MAX_PROMPT_TOKENS reserves.
IMAGE_BASE_TOKENS = 85
IMAGE_TILE_TOKENS = 170
IMAGE_TILE_SIDE = 512


class ImageRefused(Exception):
    """An image that is not sent: `reason` is "too_large" (its header claims more pixels than
    the cap) or "unreadable" (not an image Pillow can decode, or broken)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class PreparedImage:
    """An image ready for a content part: its data URL and its decoded size."""

    mime: str
    width: int
    height: int
    data_url: str

    @property
    def tokens(self) -> int:
        return image_tokens(self.width, self.height)

    @property
    def encoded_bytes(self) -> int:
        """The size of the re-encoded image (what the data URL carries, before base64)."""
        return len(self.data_url.split(",", 1)[1]) * 3 // 4


def image_tokens(width: int, height: int) -> int:
    """OpenAI's count of a high-detail image of this size (see IMAGE_BASE_TOKENS)."""
    if width <= 0 or height <= 0:
        return IMAGE_BASE_TOKENS
    scale = min(1.0, 2048 / max(width, height))
    scale *= min(1.0, 768 / (min(width, height) * scale))
    tiles = math.ceil(width * scale / IMAGE_TILE_SIDE) * math.ceil(height * scale / IMAGE_TILE_SIDE)
    return IMAGE_BASE_TOKENS + IMAGE_TILE_TOKENS * tiles


def image_type(filename: str, content_type: str | None) -> str | None:
    """The image type of an attachment sent to a model (its content type, else its suffix);
    None when it is not one of IMAGE_TYPES."""
    given = (content_type or "").split(";")[0].strip().lower()
    if given in IMAGE_TYPES:
        return given
    suffix = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    return IMAGE_SUFFIXES.get(suffix) if not given or given == "application/octet-stream" else None


def prepare_image(data: bytes, *, max_side: int, max_pixels: int) -> PreparedImage:
    """The image in `data` as a data URL (see the module docstring); ImageRefused otherwise.

    The pixel cap is checked on the header, before anything is decoded; Pillow's own bomb
    check (`Image.MAX_IMAGE_PIXELS`) stays on behind it as a second fence.
    """
    max_side = max(16, min(max_side, IMAGE_SIDE_LIMIT))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageRefused("too_large")
                if image.format not in IMAGE_TYPES.values():
                    raise ImageRefused("unreadable")
                image.seek(0)  # an animated GIF or WebP: its first frame
                # Shrunk before it is turned upright (the bound is square, so the result is
                # the same) and as it is decoded: a JPEG decodes at the smallest scale that is
                # still at least the size it is shrunk to (draft), half the time of a full one.
                scale = min(1.0, max_side / max(width, height))
                image.draft("RGB", (max(int(width * scale), 1), max(int(height * scale), 1)))
                image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
                frame = ImageOps.exif_transpose(image)
                return _encode(frame, max_side)
    except ImageRefused:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRefused("too_large") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        raise ImageRefused("unreadable") from None


def _encode(image: Image.Image, max_side: int) -> PreparedImage:
    if max(image.size) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)  # (already done)
    transparent = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    out = io.BytesIO()
    if transparent:
        image.convert("RGBA").save(out, "PNG", optimize=False)
        mime = "image/png"
    else:
        image.convert("RGB").save(out, "JPEG", quality=JPEG_QUALITY)
        mime = "image/jpeg"
    encoded = base64.b64encode(out.getvalue()).decode("ascii")
    return PreparedImage(mime, image.width, image.height, f"data:{mime};base64,{encoded}")


# -- PDFs ---------------------------------------------------------------------------------


class PdfUnreadable(Exception):
    """A PDF whose text cannot be read: `reason` is "encrypted", "no_text" (only images, or
    empty) or "broken"."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class PdfText:
    text: str
    pages_read: int
    pages: int
    cut: bool  # stopped at the page or character cap


def pdf_text(data: bytes, *, max_pages: int, max_chars: int) -> PdfText:
    """The text of a PDF's first pages, at most `max_chars` characters (PdfUnreadable else)."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise PdfUnreadable("encrypted")
        pages = len(reader.pages)
        parts: list[str] = []
        length = 0
        read = 0
        for page in reader.pages[:max_pages]:
            text = (page.extract_text() or "").strip()
            read += 1
            if text:
                parts.append(text)
                length += len(text) + 2
            if length >= max_chars:
                break
    except PdfUnreadable:
        raise
    except PdfReadError:
        raise PdfUnreadable("broken") from None
    except Exception:  # pypdf raises built-in errors too on damaged files: all mean "broken"
        raise PdfUnreadable("broken") from None
    text = "\n\n".join(parts)
    if not text.strip():
        raise PdfUnreadable("no_text")
    cut = read < pages or len(text) > max_chars
    return PdfText(text[:max_chars].rstrip(), read, pages, cut)


# -- what a message says of its attachments -----------------------------------------------


def size_text(size: int) -> str:
    """A file size as people read it: "120 KB", "3.4 MB"."""
    if size >= 1_000_000:
        return f"{size / 1_000_000:.1f} MB"
    return f"{max(size // 1000, 1)} KB"


def image_record(filename: str, mime: str, size: int) -> str:
    """The line a stored message keeps of an image (never its bytes). It says plainly that the
    model was not shown the image: words that would invite a description of a picture the model
    never received ("[image: cat.png]") make models invent one."""
    return f"[image attached, not shown to the model: {filename}, {mime}, {size_text(size)}]"


@dataclass(frozen=True, slots=True)
class AttachedImage:
    """An image of the message being answered: its record in the message text, and the
    prepared image that may go to the model beside it (never stored)."""

    filename: str
    mime: str
    size: int  # as uploaded
    image: PreparedImage

    @property
    def record(self) -> str:
        return image_record(self.filename, self.mime, self.size)

    @property
    def shown(self) -> str:
        """The record as the turn that sends the image says it."""
        return f"[image attached: {self.filename}, {self.mime}, {size_text(self.size)}; below]"

    @property
    def tokens(self) -> int:
        return self.image.tokens
