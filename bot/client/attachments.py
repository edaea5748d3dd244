"""A message's attachments read for the model: text files, PDFs and images.

Text files and PDFs become text appended to the message (within MAX_STORED_MESSAGE_CHARS, the
cut marked); each image leaves a record line in the text (name, type, size: never its bytes)
and, when asked, goes along prepared for the model (`bot.model.media`). Every download is
bounded by the size Discord states before it starts; decoding runs off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import discord

from bot.config import Settings
from bot.model.media import (
    AttachedImage,
    ImageRefused,
    PdfUnreadable,
    image_record,
    image_type,
    pdf_text,
    prepare_image,
    size_text,
)

log = logging.getLogger(__name__)

ATTACHMENT_MAX_BYTES = 100_000  # of a text file
TEXT_EXTENSIONS = frozenset(
    [
        ".txt",
        ".md",
        ".rst",
        ".py",
        ".js",
        ".ts",
        ".tsx",
        ".jsx",
        ".json",
        ".yaml",
        ".yml",
        ".toml",
        ".ini",
        ".cfg",
        ".csv",
        ".log",
        ".sql",
        ".sh",
        ".rs",
        ".go",
        ".java",
        ".kt",
        ".c",
        ".h",
        ".cpp",
        ".hpp",
        ".cs",
        ".rb",
        ".php",
        ".html",
        ".css",
        ".xml",
        ".swift",
        ".lua",
    ]
)
PDF_PROBLEMS = {
    "encrypted": "it is encrypted",
    "no_text": "it has no text to read (only images, or empty)",
    "broken": "it looks damaged",
    "too_big": "it is too large",
    "download": "it could not be downloaded",
}


@dataclass(slots=True)
class ReadAttachments:
    """What a message's attachments add: text, images for the model, notes for the user."""

    text: str
    images: list[AttachedImage] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # shown under the answer
    unreadable: list[str] = field(default_factory=list)  # not text, not an image, not a PDF


async def read_attachments(
    attachments: Sequence[discord.Attachment],
    text: str,
    settings: Settings,
    *,
    images: bool,
) -> ReadAttachments:
    """`text` with the attachments read into it (see the module docstring). With `images`
    False, images leave only their records (an edit, or VISION=off): none is downloaded."""
    limit = settings.max_stored_message_chars
    read = ReadAttachments(text)
    unread: list[str] = []  # past the message's limit: not downloaded
    images_left = settings.max_images_per_message if images and settings.vision else 0
    skipped_images = 0
    for attachment in attachments:
        name = attachment.filename
        mime = image_type(name, attachment.content_type)
        if mime is not None:
            record = image_record(name, mime, attachment.size)
            if len(read.text) + len(record) + 1 > limit:
                unread.append(name)
                continue
            read.text += "\n" + record
            if images_left > 0:
                images_left -= 1
                image = await _read_image(attachment, mime, settings, read.notes)
                if image is not None:
                    read.images.append(image)
            elif images and settings.vision:
                skipped_images += 1
            continue
        header, footer = f"\n\n--- {name} ---\n", f"\n--- end of {name} ---"
        room = limit - len(read.text) - len(header) - len(footer)
        if room <= 0:
            unread.append(name)
            continue
        if _is_pdf(attachment):
            read.text += await _read_pdf(attachment, settings, max(room - 120, 0), read.notes)
            continue
        body = await read_text_attachment(attachment)
        if body is None:
            read.unreadable.append(name)
            continue
        if len(body) > room:
            body = body[:room].rstrip() + f"\n[… the rest of {name} was not read]"
        read.text += header + body + footer
    if skipped_images:
        read.notes.append(
            f"Only the first {settings.max_images_per_message} images of a message are shown"
            f" to the model; {skipped_images} more were not."
        )
    read.text += "".join(
        f"\n[attached file {name}: not read, the message's limit was reached]" for name in unread
    )
    return read


async def _read_image(
    attachment: discord.Attachment, mime: str, settings: Settings, notes: list[str]
) -> AttachedImage | None:
    name = attachment.filename
    if attachment.size > settings.image_max_bytes:
        notes.append(f"{name} is too large ({size_text(attachment.size)}): not shown to the model.")
        return None
    # Discord states an image's dimensions too: a bomb it measured is not even downloaded
    # (the header is checked again after the download, whatever Discord said).
    if (attachment.width or 0) * (attachment.height or 0) > settings.image_max_pixels:
        notes.append(f"{name} has too many pixels to open safely: not shown to the model.")
        return None
    try:
        data = await attachment.read()
    except discord.HTTPException:
        log.warning("Could not download attachment %s", attachment.id)
        notes.append(f"I couldn't download {name}: not shown to the model.")
        return None
    try:
        prepared = await asyncio.to_thread(
            prepare_image,
            data,
            max_side=settings.image_max_side,
            max_pixels=settings.image_max_pixels,
        )
    except ImageRefused as refused:
        if refused.reason == "too_large":
            log.info("Image %s refused: its header claims too many pixels", attachment.id)
            notes.append(f"{name} has too many pixels to open safely: not shown to the model.")
        else:
            notes.append(f"I couldn't read {name} as an image: not shown to the model.")
        return None
    return AttachedImage(name, mime, attachment.size, prepared)


def _is_pdf(attachment: discord.Attachment) -> bool:
    content_type = (attachment.content_type or "").split(";")[0].strip().lower()
    return content_type == "application/pdf" or attachment.filename.lower().endswith(".pdf")


async def _read_pdf(
    attachment: discord.Attachment, settings: Settings, room: int, notes: list[str]
) -> str:
    """A PDF's text as the message carries it, or a line saying why it could not be read."""
    name = attachment.filename
    problem = "too_big" if attachment.size > settings.pdf_max_bytes else ""
    if not problem:
        try:
            data = await attachment.read()
        except discord.HTTPException:
            log.warning("Could not download attachment %s", attachment.id)
            problem = "download"
    if not problem:
        try:
            found = await asyncio.to_thread(
                pdf_text, data, max_pages=settings.pdf_max_pages, max_chars=room
            )
        except PdfUnreadable as unreadable:
            problem = unreadable.reason
    if problem:
        why = PDF_PROBLEMS.get(problem, PDF_PROBLEMS["broken"])
        notes.append(f"I couldn't read the text of {name}: {why}.")
        return f"\n[attached PDF {name}: its text could not be read, {why}]"
    body = found.text
    if found.cut:
        body += (
            f"\n[… the rest of {name} was not read: {found.pages_read} of {found.pages} pages"
            " read, or the message's limit was reached]"
        )
    return f"\n\n--- {name} ---\n{body}\n--- end of {name} ---"


async def read_text_attachment(attachment: discord.Attachment) -> str | None:
    """The text of a small text file, or None when it is not one (images, binaries, big files)."""
    suffix = (
        "." + attachment.filename.rsplit(".", 1)[-1].lower() if "." in attachment.filename else ""
    )
    content_type = (attachment.content_type or "").split(";")[0]
    is_text = content_type.startswith("text/") or content_type == "application/json"
    if not (is_text or suffix in TEXT_EXTENSIONS) or attachment.size > ATTACHMENT_MAX_BYTES:
        return None
    try:
        data = await attachment.read()
    except discord.HTTPException:
        log.warning("Could not download attachment %s", attachment.id)
        return None
    if b"\x00" in data:
        return None  # binary after all
    return data.decode("utf-8", errors="replace")
