"""Benchmark 10: the reply-path overhead of an image turn (decode + resize + re-encode).

What the chat cog does for each image of a message before the engine sees it, measured as it
runs there (`asyncio.to_thread(prepare_image, ...)`, IMAGE_MAX_SIDE=1536): a 12-megapixel phone
photo (4032×3024 JPEG, EXIF orientation 6, as a phone sends it) and a 1920×1080 PNG
screenshot. Figures: p50 and p99 per image. The download from Discord's CDN and the model's
own time with the image are not in it (they are the network's and the model's).
"""

from __future__ import annotations

import asyncio
import io
import time

from PIL import Image

from bench.core import BenchResult, Figure, Goal, Scale, percentile
from bot.model.media import prepare_image

MAX_SIDE = 1536
MAX_PIXELS = 40_000_000


def _photo(width: int, height: int) -> bytes:
    """A photo-like JPEG: smooth gradients with sensor noise (compresses as photos do)."""
    base = Image.radial_gradient("L").resize((width, height)).convert("RGB")
    noise = Image.effect_noise((width, height), 40).convert("RGB")
    image = Image.blend(base, noise, 0.3)
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, exif=exif)
    return out.getvalue()


def _screenshot(width: int, height: int) -> bytes:
    image = Image.new("RGB", (width, height), (54, 57, 63))
    for row in range(0, height, 24):  # lines of "text"
        image.paste((220, 221, 222), (40, row + 6, 40 + (row * 37) % (width - 80), row + 18))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


async def _measure(data: bytes, samples: int) -> list[float]:
    timings = []
    for _ in range(samples):
        started = time.perf_counter()
        await asyncio.to_thread(prepare_image, data, max_side=MAX_SIDE, max_pixels=MAX_PIXELS)
        timings.append((time.perf_counter() - started) * 1000)
    return timings


async def run(scale: Scale) -> BenchResult:
    samples = max(scale.latency_turns // 2, 20)
    photo, screenshot = _photo(4032, 3024), _screenshot(1920, 1080)
    await _measure(photo, 2)  # warm up (Pillow's plugins load on first use)
    result = BenchResult()
    for key, name, data in (
        ("10a", "12 MP phone photo (JPEG, 4032×3024)", photo),
        ("10b", "1920×1080 screenshot (PNG)", screenshot),
    ):
        timings = await _measure(data, samples)
        result.figures += [
            Figure(f"{key}", f"{name}: p50", percentile(timings, 0.5), "ms", Goal(500.0)),
            Figure(f"{key}", f"{name}: p99", percentile(timings, 0.99), "ms", Goal(1000.0)),
        ]
    result.notes.append(
        f"{samples} images each, one at a time, IMAGE_MAX_SIDE={MAX_SIDE}; photo"
        f" {len(photo) // 1000} KB, screenshot {len(screenshot) // 1000} KB as uploaded."
        " JPEGs are decoded at a reduced scale (Pillow's draft mode, by `thumbnail`), and"
        " turned upright after the resize."
    )
    return result
