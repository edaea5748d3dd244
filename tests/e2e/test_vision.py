"""Images and PDFs end to end: what reaches the model, what the user is told, what is stored.

The loopback model server decodes the image parts it takes (a seeing model) or refuses them in
the words of a text-only server; the loopback Discord serves the attachments from its CDN.
"""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from bot.client.bot import MemoryBot
from tests.fakes.discord import FakeDiscord, FakeUser
from tests.fakes.llm_server import FakeLLM, image_parts, is_reply_call, message_text
from tests.helpers.e2e import Bots, eventually
from tests.helpers.media import blank_pdf, encrypted_pdf, jpeg, pdf, png, png_bomb
from tests.helpers.postgres_files import files_holding
from tests.helpers.storage import file_contains

pytestmark = pytest.mark.both_backends


async def send(d: FakeDiscord, text: str, *files: tuple[str, bytes, str]) -> str:
    await d.send_message(
        d.alice,
        d.CHANNEL_ID,
        text,
        mention_bot=True,
        attachments=[{"filename": n, "data": b, "content_type": t} for n, b, t in files],
    )
    return await d.final_text(await d.next_bot_message(d.CHANNEL_ID), quiet=0.3)


async def stored_user_texts(bot: MemoryBot, user: FakeUser) -> list[str]:
    export = await bot.storage.users.export(user.id)
    return [m["content"] for m in export["messages"] if m["role"] == "user"]


def reply_calls(fake_llm: FakeLLM) -> list[dict[str, object]]:
    return [call for call in fake_llm.chat_calls if is_reply_call(call)]


async def test_images_reach_a_seeing_model_as_data_urls_within_the_size_rules(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    bot = await bots.start(image_max_side=1024)
    photo = jpeg(3000, 2000, orientation=6)  # taken sideways: EXIF says turn it upright
    reply = await send(
        d,
        "what do you see?",
        ("photo.jpg", photo, "image/jpeg"),
        ("logo.png", png(300, 200, alpha=True), "image/png"),
    )
    assert reply.startswith("echo: ") and "⚠️" not in reply
    [call] = reply_calls(fake_llm)
    parts = image_parts(call)
    assert len(parts) == 2
    assert all(p["image_url"]["url"].startswith("data:image/") for p in parts)
    first, second = fake_llm.images[:2]  # the reply's (the descriptions' come after)
    assert (first.mime, first.width, first.height) == ("image/jpeg", 683, 1024)  # upright
    assert (second.mime, second.width, second.height) == ("image/png", 300, 200)  # alpha kept
    decoded = Image.open(io.BytesIO(base64.b64decode(parts[0]["image_url"]["url"].split(",")[1])))
    assert dict(decoded.getexif()) == {}, "no EXIF (camera, GPS) is sent on"
    # The text part says the images follow; the stored message records them, no bytes.
    text = message_text(call["messages"][-1])  # type: ignore[index]
    assert "photo.jpg" in text and "below" in text
    [stored] = await stored_user_texts(bot, d.alice)
    assert "[image attached, not shown to the model: photo.jpg, image/jpeg," in stored
    assert "logo.png" in stored and "base64" not in stored


async def test_a_refusing_model_gets_the_turn_again_without_images_and_is_remembered(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    fake_llm.sees_images = False
    fake_llm.image_refusal = "lmstudio"
    bot = await bots.start(memory_model="gpt-4o")  # one model: one refusal to learn
    reply = await send(d, "look", ("a.png", png(64, 64), "image/png"))
    assert reply.startswith("echo: look")
    assert "cannot see images" in reply
    assert fake_llm.image_refusals == 1
    # The answer came from the text only, which says plainly the image was not shown.
    last = reply_calls(fake_llm)[-1]
    assert image_parts(last) == []
    assert "not shown to the model: a.png" in message_text(last["messages"][-1])  # type: ignore[index]
    # Later image turns go text-only at once, after a restart too: no failed call first.
    reply = await send(d, "and this one", ("b.png", png(64, 64), "image/png"))
    assert "cannot see images" in reply and fake_llm.image_refusals == 1
    await bots.stop(bot)
    await bots.start(memory_model="gpt-4o")
    calls = len(fake_llm.chat_calls)
    reply = await send(d, "after a restart", ("c.png", png(64, 64), "image/png"))
    assert "cannot see images" in reply
    assert fake_llm.image_refusals == 1
    assert all(image_parts(call) == [] for call in fake_llm.chat_calls[calls:])


async def test_no_image_bytes_in_the_database_files(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM, backend: str, db_path: object
) -> None:
    d = fake_discord
    bot = await bots.start()
    photo = jpeg(400, 300, comment="QXJPEGMARKERQX")
    await send(d, "keep this in mind", ("holiday.jpg", photo, "image/jpeg"))
    [call] = reply_calls(fake_llm)
    sent = image_parts(call)[0]["image_url"]["url"].split(",", 1)[1]
    needles = (sent[100:160], base64.b64encode(photo).decode()[100:160], "QXJPEGMARKERQX")
    if backend == "sqlite":
        await bot.storage.db.write_one("PRAGMA wal_checkpoint(PASSIVE)")
        for needle in needles:
            assert not file_contains(bot.settings.database_path, needle)
        raw = photo[200:260]
        folder = bot.settings.database_path.parent
        assert not any(raw in p.read_bytes() for p in folder.iterdir() if p.is_file())
    else:
        assert await files_holding(bot.storage, *needles) == {}
    [stored] = await stored_user_texts(bot, d.alice)
    assert "holiday.jpg" in stored


async def test_a_decompression_bomb_is_refused_and_the_bot_stays_up(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    await bots.start()
    reply = await send(d, "open this", ("huge.png", png_bomb(30000, 30000), "image/png"))
    assert reply.startswith("echo: open this")
    assert "huge.png has too many pixels" in reply and "not shown to the model" in reply
    assert image_parts(reply_calls(fake_llm)[-1]) == []
    # Still up, and images still work.
    reply = await send(d, "and a small one", ("ok.png", png(32, 32), "image/png"))
    assert reply.startswith("echo: and a small one")
    assert len(image_parts(reply_calls(fake_llm)[-1])) == 1


async def test_an_image_larger_than_the_cap_is_not_downloaded(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    await bots.start(image_max_bytes=20_000)
    downloads = len(d.cdn_downloads)
    reply = await send(d, "big one", ("big.jpg", b"x" * 30_000, "image/jpeg"))
    assert "big.jpg is too large" in reply
    assert len(d.cdn_downloads) == downloads
    # Discord states an image's dimensions: a bomb it measured is not downloaded either.
    await d.send_message(
        d.alice,
        d.CHANNEL_ID,
        "a bomb",
        mention_bot=True,
        attachments=[{"filename": "bomb.png", "data": png_bomb(), "width": 30000, "height": 30000}],
    )
    reply = await d.final_text(await d.next_bot_message(d.CHANNEL_ID), quiet=0.3)
    assert "bomb.png has too many pixels" in reply
    assert len(d.cdn_downloads) == downloads


def describing(body: dict[str, object]) -> str:
    if is_reply_call(body):
        return "echo: " + message_text(body["messages"][-1])[:200]  # type: ignore[index]
    return "A grey cat asleep on a red sofa."


async def test_later_prompts_carry_the_description_not_the_image(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    fake_llm.responder = describing
    bot = await bots.start()
    first = await d.send_message(
        d.alice,
        d.CHANNEL_ID,
        "my cat",
        mention_bot=True,
        attachments=[{"filename": "cat.png", "data": png(64, 64), "content_type": "image/png"}],
    )
    await d.final_text(await d.next_bot_message(d.CHANNEL_ID), quiet=0.3)

    async def described() -> bool:
        return "grey cat asleep" in (await stored_user_texts(bot, d.alice))[0]

    await eventually(described, "the image's description stored with the message")
    [stored] = await stored_user_texts(bot, d.alice)
    assert 'cat.png, image/png, 1 KB; described when it was sent: "A grey cat' in stored
    await send(d, "what was on the sofa?")
    last = reply_calls(fake_llm)[-1]
    assert image_parts(last) == [], "the image is never sent again"
    history = [message_text(m) for m in last["messages"][1:-1]]  # type: ignore[index]
    assert any("grey cat asleep on a red sofa" in text for text in history)
    # An edit keeps it (the attachments are read again, and their records come back bare).
    await d.edit_user_message(first, "my cat, Tom")

    async def edited() -> bool:
        return "my cat, Tom" in (await stored_user_texts(bot, d.alice))[0]

    await eventually(edited, "the edit stored")
    assert "grey cat asleep" in (await stored_user_texts(bot, d.alice))[0]
    # The description is the message's text: exported with it, and erased with it.
    export = await bot.storage.users.export(d.alice.id)
    assert any("grey cat asleep" in m["content"] for m in export["messages"])
    await bot.engine.forget_user(d.alice.id)
    assert await stored_user_texts(bot, d.alice) == []


async def test_no_description_when_the_memory_model_cannot_see(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    bot = await bots.start()
    fake_llm.sees_images = False
    await send(d, "my cat", ("cat.png", png(64, 64), "image/png"))
    await eventually(lambda: _learned(bot, "gpt-4o-mini"), "the memory model's refusal learned")
    [stored] = await stored_user_texts(bot, d.alice)
    assert "described" not in stored and "not shown to the model: cat.png" in stored


async def _learned(bot: MemoryBot, model: str) -> bool:
    return await bot.storage.capabilities.sees_images(model) is False


async def test_pdfs_are_read_and_bad_pdfs_noted(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    bot = await bots.start(pdf_max_pages=2)
    document = pdf(["Quarterly report: sales rose", "Page two text", "Page three secret"])
    reply = await send(d, "summarise", ("report.pdf", document, "application/pdf"))
    assert "⚠️" not in reply
    sent = message_text(reply_calls(fake_llm)[-1]["messages"][-1])  # type: ignore[index]
    assert "Quarterly report: sales rose" in sent and "Page two text" in sent
    assert "Page three" not in sent and "2 of 3 pages" in sent
    reply = await send(
        d,
        "and these",
        ("locked.pdf", encrypted_pdf("hidden words"), "application/pdf"),
        ("scan.pdf", blank_pdf(), "application/pdf"),
        ("broken.pdf", b"%PDF-1.4\nnot really a pdf", "application/pdf"),
    )
    assert reply.startswith("echo: and these")
    assert "locked.pdf: it is encrypted" in reply
    assert "scan.pdf: it has no text" in reply and "broken.pdf: it looks damaged" in reply
    stored = await stored_user_texts(bot, d.alice)
    assert "Quarterly report" in stored[0] and "hidden words" not in stored[1]


async def test_model_show_says_whether_the_model_sees_images(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord

    async def model_show() -> str:
        interaction = await d.slash(d.admin, "mnemo-admin", "show", group="model")
        return await interaction.wait_text()

    bot = await bots.start()
    assert "Sees images: not known yet" in await model_show()
    fake_llm.sees_images = False
    await send(d, "look", ("a.png", png(16, 16), "image/png"))
    assert "Sees images: no" in await model_show()
    await bots.stop(bot)
    await bots.start()  # a new process reads what was learned
    assert "Sees images: no" in await model_show()
