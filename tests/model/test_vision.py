"""Images for the model: the per-tile estimate, the prepared image, the prompt's budget, and
the refusals of text-only servers as each of them words it (through the real SDK)."""

from __future__ import annotations

import pytest

from bot.memory.prompt import PromptBuilder, PromptLimits
from bot.model.llm import ErrorKind, LLMClient, LLMError, StreamState
from bot.model.media import (
    AttachedImage,
    ImageRefused,
    image_record,
    image_tokens,
    prepare_image,
)
from bot.model.tokens import Tokenizer
from tests.fakes.llm_server import IMAGE_REFUSALS, FakeLLM
from tests.helpers.media import jpeg, png, png_bomb


def test_image_tokens_follow_openais_high_detail_count() -> None:
    assert image_tokens(512, 512) == 85 + 170  # one tile
    assert image_tokens(1024, 1024) == 85 + 170 * 4  # short side 768: 2×2 tiles
    assert image_tokens(1536, 1024) == 85 + 170 * 6  # 1152×768: 3×2 tiles
    assert image_tokens(4096, 8192) == image_tokens(1024, 2048)  # first fit in 2048×2048


def test_a_prepared_image_is_upright_small_and_without_metadata() -> None:
    image = prepare_image(jpeg(2400, 1200, orientation=8), max_side=600, max_pixels=10**8)
    assert (image.mime, image.width, image.height) == ("image/jpeg", 300, 600)
    assert image.data_url.startswith("data:image/jpeg;base64,")
    assert b"SecretCam" not in image.data_url.encode()


def test_the_side_cap_is_never_above_2048() -> None:
    image = prepare_image(png(3000, 100), max_side=4000, max_pixels=10**8)
    assert image.width == 2048


def test_pixels_are_checked_before_decoding() -> None:
    with pytest.raises(ImageRefused) as refused:
        prepare_image(png_bomb(30000, 30000), max_side=1536, max_pixels=40_000_000)
    assert refused.value.reason == "too_large"
    with pytest.raises(ImageRefused) as refused:
        prepare_image(b"GIF89a not really", max_side=1536, max_pixels=40_000_000)
    assert refused.value.reason == "unreadable"


def attached(name: str, width: int, height: int) -> AttachedImage:
    prepared = prepare_image(png(width, height), max_side=2048, max_pixels=10**8)
    return AttachedImage(name, "image/png", 1000, prepared)


def test_images_count_against_the_prompt_budget(tokenizer: Tokenizer) -> None:
    limits = PromptLimits(
        max_prompt_tokens=2000,
        max_message_tokens=300,
        summary_max_tokens=100,
        facts_max_tokens=50,
    )
    images = [attached(f"{n}.png", 1024, 1024) for n in "abc"]  # 765 tokens each
    text = "look\n" + "\n".join(image_record(i.filename, i.mime, i.size) for i in images)
    builder = PromptBuilder(tokenizer, limits)
    builder.place_sections(system_prompt="system", sections={}, new_message=text, images=images)
    prompt = builder.finish([])
    assert prompt.images == 2, "the third does not fit in 2000 tokens"
    assert prompt.tokens <= limits.max_prompt_tokens
    assert prompt.section_tokens["images"] == 2 * 765
    parts = prompt.messages[-1]["content"]
    assert [part["type"] for part in parts] == ["text", "image_url", "image_url"]
    assert "not shown to the model: c.png" in parts[0]["text"]
    assert "not shown to the model: a.png" not in parts[0]["text"]


@pytest.mark.parametrize("server", sorted(IMAGE_REFUSALS))
async def test_each_servers_refusal_of_images_is_recognised(fake_llm: FakeLLM, server: str) -> None:
    fake_llm.sees_images = False
    fake_llm.image_refusal = server
    llm = LLMClient(
        api_key="k", base_url=fake_llm.base_url, timeout=5, max_retries=0, reply_deadline=5
    )
    image = prepare_image(png(16, 16), max_side=64, max_pixels=10**6)
    content = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": image.data_url}},
    ]
    try:
        with pytest.raises(LLMError) as raised:
            async for _ in llm.stream_chat(
                "m", [{"role": "user", "content": content}], max_tokens=20, state=StreamState()
            ):
                pass
        assert raised.value.kind == ErrorKind.IMAGES_REFUSED
        # The same words about a text-only request are not taken for a refusal of images.
        fake_llm.fail_next("refused", message=str(IMAGE_REFUSALS[server][1]))
        with pytest.raises(LLMError) as other:
            async for _ in llm.stream_chat(
                "m", [{"role": "user", "content": "hi"}], max_tokens=20, state=StreamState()
            ):
                pass
        assert other.value.kind != ErrorKind.IMAGES_REFUSED
    finally:
        await llm.close()
