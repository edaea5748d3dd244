"""Self-test of the loopback Discord: the real discord.py client connects to it and is driven
end to end (gateway, REST, interactions, views, resume, faults)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import discord
import pytest
import pytest_asyncio
from discord import app_commands
from discord.ext import commands

from tests.fakes.discord import FakeDiscord

GUILD = discord.Object(FakeDiscord.GUILD_ID)


class ConfirmView(discord.ui.View):
    """One button; pressing it edits the message and records who pressed it."""

    def __init__(self, pressed: asyncio.Queue[int]) -> None:
        super().__init__(timeout=30)
        self.pressed = pressed

    @discord.ui.button(label="Yes", custom_id="confirm:yes", style=discord.ButtonStyle.danger)
    async def yes(
        self, interaction: discord.Interaction, button: discord.ui.Button[ConfirmView]
    ) -> None:
        self.pressed.put_nowait(interaction.user.id)
        self.stop()  # a view's timeout task outlives Client.close() unless the view is stopped
        await interaction.response.edit_message(content="confirmed", view=None)


class Memo(app_commands.Group):
    """/memo show | slow | confirm | pick — registered for GUILD only."""

    def __init__(self, pressed: asyncio.Queue[int]) -> None:
        super().__init__(name="memo", description="memo commands")
        self.pressed = pressed

    @app_commands.command(name="show", description="answer ephemerally")
    async def show(self, interaction: discord.Interaction, text: str = "nothing") -> None:
        await interaction.response.send_message(f"you said {text}", ephemeral=True)

    @app_commands.command(name="slow", description="defer, then follow up")
    async def slow(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await asyncio.sleep(0.05)
        await interaction.followup.send("done slowly", ephemeral=True)

    @app_commands.command(name="confirm", description="ask with a button")
    async def confirm(self, interaction: discord.Interaction) -> None:
        view = ConfirmView(self.pressed)
        await interaction.response.send_message("Sure?", view=view, ephemeral=True)

    @app_commands.command(name="late", description="answers after the deadline")
    async def late(self, interaction: discord.Interaction) -> None:
        await asyncio.sleep(0.3)
        try:
            await interaction.response.send_message("too late")
        except discord.NotFound as exc:
            self.pressed.put_nowait(-exc.code)

    @app_commands.command(name="pick", description="autocomplete")
    async def pick(self, interaction: discord.Interaction, fruit: str) -> None:
        await interaction.response.send_message(f"picked {fruit}")

    @pick.autocomplete("fruit")
    async def pick_fruit(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        names = ["apple", "apricot", "banana"]
        return [app_commands.Choice(name=n, value=n) for n in names if n.startswith(current)]


class PingBot(commands.Bot):
    """Replies "pong" when mentioned or DMed; "button" in the text gets a button instead."""

    def __init__(self) -> None:
        intents = discord.Intents.default()
        intents.message_content = True
        super().__init__(
            command_prefix="!",
            intents=intents,
            guild_ready_timeout=0.1,
            allowed_mentions=discord.AllowedMentions.none(),
        )
        self.seen: list[int] = []
        self.ready_count = 0
        self.pressed: asyncio.Queue[int] = asyncio.Queue()

    async def setup_hook(self) -> None:
        self.tree.add_command(Memo(self.pressed), guild=GUILD)

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        return None  # discord.py sleeps 5 s before a re-IDENTIFY; tests have no time for that

    async def on_ready(self) -> None:
        self.ready_count += 1

    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot:
            return
        self.seen.append(message.id)
        addressed = self.user in message.mentions or message.guild is None
        if not addressed:
            return
        if "button" in message.content:
            await message.channel.send("press it", view=ConfirmView(self.pressed))
        else:
            await message.reply("pong", mention_author=False)


@pytest_asyncio.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    fake = FakeDiscord()
    await fake.start()
    fake.install()
    yield fake
    await fake.close()
    assert discord.http.Route.BASE == "https://discord.com/api/v10"


@pytest_asyncio.fixture
async def ping_bot(fake_discord: FakeDiscord) -> AsyncIterator[PingBot]:
    bot = PingBot()
    task = asyncio.create_task(bot.start("fake-token"))
    await fake_discord.wait_ready()
    await asyncio.wait_for(bot.wait_until_ready(), 5)
    yield bot
    await bot.close()
    await asyncio.wait_for(task, 5)
    assert task.done() and task.exception() is None
    assert not await _leftover_tasks(), "tasks still running after bot.close()"


async def _leftover_tasks(grace: float = 0.5) -> set[asyncio.Task[object]]:
    others = asyncio.all_tasks() - {asyncio.current_task()}
    if others:
        await asyncio.wait(others, timeout=grace)
    return {t for t in others if not t.done()}


async def test_connects_and_is_ready(fake_discord: FakeDiscord, ping_bot: PingBot) -> None:
    assert fake_discord.identify_count == 1
    assert ping_bot.user is not None and ping_bot.user.id == FakeDiscord.BOT_USER_ID
    assert ping_bot.application_id == FakeDiscord.APPLICATION_ID
    guild = ping_bot.get_guild(FakeDiscord.GUILD_ID)
    assert guild is not None and guild.name == "Test Server"
    assert guild.get_channel(FakeDiscord.CHANNEL_ID) is not None
    assert guild.get_thread(FakeDiscord.THREAD_ID) is not None
    assert guild.me.get_role(FakeDiscord.BOT_ROLE_ID) is not None
    assert ping_bot.get_guild(FakeDiscord.GUILD2_ID) is not None
    assert ping_bot.ready_count == 1


async def test_mention_gets_a_reply(fake_discord: FakeDiscord, ping_bot: PingBot) -> None:
    sent = await fake_discord.send_message(
        fake_discord.alice, FakeDiscord.CHANNEL_ID, "hello", mention_bot=True
    )
    reply = await fake_discord.next_bot_message(FakeDiscord.CHANNEL_ID)
    assert reply.content == "pong"
    assert reply.reply_to_id == int(sent["id"])
    assert reply.allowed_mentions == {"parse": [], "replied_user": False}
    # Not addressed, and the bot's own echoed message: no answer.
    await fake_discord.send_message(fake_discord.bob, FakeDiscord.CHANNEL_ID, "just chatting")
    await fake_discord.expect_no_bot_message(FakeDiscord.CHANNEL_ID, wait=0.3)


async def test_dm_gets_a_reply(fake_discord: FakeDiscord, ping_bot: PingBot) -> None:
    await fake_discord.send_dm(fake_discord.bob, "hi there")
    reply = await fake_discord.next_bot_message(fake_discord.dm_channel_id(fake_discord.bob))
    assert reply.content == "pong" and reply.guild_id is None


async def test_slash_sync_and_ephemeral_answer(
    fake_discord: FakeDiscord, ping_bot: PingBot
) -> None:
    await ping_bot.tree.sync(guild=GUILD)
    puts = [r for r in fake_discord.requests if r.method == "PUT"]
    assert puts and puts[-1].path.endswith(f"/guilds/{FakeDiscord.GUILD_ID}/commands")
    assert [c["name"] for c in fake_discord.guild_commands[FakeDiscord.GUILD_ID]] == ["memo"]

    interaction = await fake_discord.slash(fake_discord.alice, "memo", "show", {"text": "hey"})
    response = await interaction.response()
    assert response["type"] == 4
    assert response["data"]["flags"] & 64
    assert await interaction.wait_text() == "you said hey"
    assert interaction.ephemeral


async def test_slash_defer_then_followup(fake_discord: FakeDiscord, ping_bot: PingBot) -> None:
    await ping_bot.tree.sync(guild=GUILD)
    interaction = await fake_discord.slash(fake_discord.bob, "memo", "slow")
    assert (await interaction.response())["type"] == 5
    assert await interaction.wait_text() == "done slowly"
    assert interaction.ephemeral and interaction.original is not None
    assert not interaction.original.loading and interaction.followups == []


async def test_button_in_interaction_response_reaches_the_view(
    fake_discord: FakeDiscord, ping_bot: PingBot
) -> None:
    await ping_bot.tree.sync(guild=GUILD)
    interaction = await fake_discord.slash(fake_discord.alice, "memo", "confirm")
    await interaction.wait_text()
    assert interaction.original is not None
    assert interaction.original.custom_ids == ["confirm:yes"]
    click = await fake_discord.click(fake_discord.alice, interaction.original, "confirm:yes")
    assert await asyncio.wait_for(ping_bot.pressed.get(), 5) == fake_discord.alice.id
    assert (await click.response())["type"] == 7
    assert interaction.original.content == "confirmed"
    assert interaction.original.components == []


async def test_button_in_channel_message_reaches_the_view(
    fake_discord: FakeDiscord, ping_bot: PingBot
) -> None:
    await fake_discord.send_message(
        fake_discord.alice, FakeDiscord.CHANNEL_ID, "button please", mention_bot=True
    )
    message = await fake_discord.next_bot_message(FakeDiscord.CHANNEL_ID)
    await fake_discord.click(fake_discord.bob, message, "confirm:yes")
    assert await asyncio.wait_for(ping_bot.pressed.get(), 5) == fake_discord.bob.id
    assert await fake_discord.final_text(message, quiet=0.1) == "confirmed"


async def test_autocomplete(fake_discord: FakeDiscord, ping_bot: PingBot) -> None:
    await ping_bot.tree.sync(guild=GUILD)
    choices = await fake_discord.autocomplete(fake_discord.alice, "memo", "pick", "fruit", "ap")
    assert [c["value"] for c in choices] == ["apple", "apricot"]


async def test_late_interaction_response_is_unknown(
    fake_discord: FakeDiscord, ping_bot: PingBot
) -> None:
    fake_discord.interaction_deadline = 0.2
    await ping_bot.tree.sync(guild=GUILD)
    interaction = await fake_discord.slash(fake_discord.alice, "memo", "late")
    assert await asyncio.wait_for(ping_bot.pressed.get(), 5) == -10062
    assert interaction.expired and not interaction.responses


async def test_second_acknowledgement_is_rejected(
    fake_discord: FakeDiscord, ping_bot: PingBot
) -> None:
    await ping_bot.tree.sync(guild=GUILD)
    interaction = await fake_discord.slash(fake_discord.alice, "memo", "show")
    await interaction.response()
    url = f"{fake_discord.base_url}/interactions/{interaction.id}/{interaction.token}/callback"
    body = {"type": 4, "data": {"content": "again"}}
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as resp:
        assert resp.status == 400
        assert (await resp.json())["code"] == 40060


async def test_resume_replays_and_the_bot_continues(
    fake_discord: FakeDiscord, ping_bot: PingBot
) -> None:
    sent = await fake_discord.send_message(
        fake_discord.alice, FakeDiscord.CHANNEL_ID, "before", mention_bot=True
    )
    await fake_discord.next_bot_message(FakeDiscord.CHANNEL_ID)
    await fake_discord.drop_connection()
    assert fake_discord.resume_count == 1 and fake_discord.identify_count == 1
    assert fake_discord.gateway_urls[-1].startswith("/resume")
    # The replay delivers the same message again: this bot (no dedup) answers it twice.
    duplicate = await fake_discord.next_bot_message(FakeDiscord.CHANNEL_ID)
    assert duplicate.reply_to_id == int(sent["id"])
    assert ping_bot.seen.count(int(sent["id"])) == 2
    after = await fake_discord.send_message(
        fake_discord.bob, FakeDiscord.CHANNEL_ID, "after", mention_bot=True
    )
    reply = await fake_discord.next_bot_message(FakeDiscord.CHANNEL_ID)
    assert reply.reply_to_id == int(after["id"])


async def test_invalid_session_means_identify_again(
    fake_discord: FakeDiscord, ping_bot: PingBot
) -> None:
    await fake_discord.invalidate_session()
    await fake_discord.wait_identify(2)
    await fake_discord.send_dm(fake_discord.alice, "still there?")
    reply = await fake_discord.next_bot_message(fake_discord.dm_channel_id(fake_discord.alice))
    assert reply.content == "pong"
    # on_ready comes guild_ready_timeout after the GUILD_CREATEs: possibly after on_message.
    await fake_discord.wait_for(lambda: ping_bot.ready_count == 2 or None, 5, "on_ready again")


async def test_message_limits_are_enforced(fake_discord: FakeDiscord, ping_bot: PingBot) -> None:
    channel = ping_bot.get_channel(FakeDiscord.CHANNEL_ID)
    assert isinstance(channel, discord.TextChannel)
    for too_long in ("x" * 2001, "😀" * 1001):  # 1001 emoji are 2002 UTF-16 units
        with pytest.raises(discord.HTTPException) as info:
            await channel.send(too_long)
        assert info.value.status == 400 and info.value.code == 50035
    with pytest.raises(discord.HTTPException) as info:
        await channel.send("   ")
    assert info.value.code == 50006
    exactly = await channel.send("😀" * 1000)
    assert exactly.content == "😀" * 1000


async def test_embed_limits_are_enforced(fake_discord: FakeDiscord, ping_bot: PingBot) -> None:
    channel = ping_bot.get_channel(FakeDiscord.CHANNEL_ID)
    assert isinstance(channel, discord.TextChannel)
    too_big = [
        discord.Embed(title="t" * 257),
        discord.Embed(description="d" * 4097),
        discord.Embed().add_field(name="n" * 257, value="v"),
        discord.Embed().add_field(name="n", value="v" * 1025),
        discord.Embed().set_footer(text="f" * 2049),
        discord.Embed().set_author(name="a" * 257),
        # Each text within its limit, 6002 characters in all: past the 6000 of a message.
        discord.Embed(description="d" * 4000)
        .add_field(name="n", value="v" * 1000)
        .add_field(name="m", value="w" * 1000),
    ]
    for embed in too_big:
        with pytest.raises(discord.HTTPException) as info:
            await channel.send(embed=embed)
        assert info.value.status == 400 and info.value.code == 50035, embed.to_dict()
    many = discord.Embed()
    for number in range(26):
        many.add_field(name=str(number), value="v")
    with pytest.raises(discord.HTTPException):
        await channel.send(embed=many)
    fits = discord.Embed(title="t" * 256, description="d" * 4096).add_field(
        name="n" * 256, value="v" * 1024
    )
    sent = await channel.send(embed=fits)
    assert sent.embeds[0].title == "t" * 256


async def test_unknown_route_is_recorded(fake_discord: FakeDiscord, ping_bot: PingBot) -> None:
    with pytest.raises(discord.NotFound):
        await ping_bot.http.request(discord.http.Route("GET", "/no/such/route"))
    assert [r.path for r in fake_discord.unknown_requests] == ["/no/such/route"]
    assert fake_discord.unknown_requests[0].status == 404


async def test_429_with_via_is_retried(fake_discord: FakeDiscord, ping_bot: PingBot) -> None:
    fake_discord.fail_next("POST", r"/channels/\d+/messages", 429)
    await fake_discord.send_message(
        fake_discord.alice, FakeDiscord.CHANNEL_ID, "hi", mention_bot=True
    )
    assert (await fake_discord.next_bot_message(FakeDiscord.CHANNEL_ID)).content == "pong"
    posts = [
        r.status for r in fake_discord.requests if r.method == "POST" and "/messages" in r.path
    ]
    assert posts == [429, 200]


async def test_fatal_close_code_stops_the_client(fake_discord: FakeDiscord) -> None:
    bot = PingBot()
    task = asyncio.create_task(bot.start("fake-token"))
    await fake_discord.wait_ready()
    await fake_discord.close_gateway(4004, "Authentication failed.")
    with pytest.raises(discord.ConnectionClosed) as info:
        await asyncio.wait_for(task, 5)
    assert info.value.code == 4004
    assert bot.is_closed()


async def test_private_channels_and_threads_as_discord_sends_them(
    fake_discord: FakeDiscord,
) -> None:
    """Permission overwrites (GUILD_CREATE, then CHANNEL_UPDATE) and a private thread, as
    discord.py reads them: @everyone denied View Channel, the bot's role and a member allowed."""
    fake = fake_discord
    fake.add_private_channel(PRIVATE_CHANNEL_ID, "staff", members=[fake.alice])
    fake.add_private_thread(PRIVATE_THREAD_ID, FakeDiscord.CHANNEL_ID)
    bot = PingBot()
    task = asyncio.create_task(bot.start("fake-token"))
    try:
        await fake.wait_ready()
        await asyncio.wait_for(bot.wait_until_ready(), 5)
        guild = bot.get_guild(FakeDiscord.GUILD_ID)
        assert guild is not None
        everyone, me = guild.default_role, guild.me
        staff = guild.get_channel(PRIVATE_CHANNEL_ID)
        assert isinstance(staff, discord.TextChannel)
        alice, bob = discord.Object(fake.alice.id), discord.Object(fake.bob.id)
        assert not staff.permissions_for(everyone).view_channel
        assert staff.permissions_for(me).view_channel
        assert staff.overwrites_for(alice).view_channel is True  # type: ignore[arg-type]
        assert staff.overwrites_for(bob).view_channel is None  # type: ignore[arg-type]
        thread = guild.get_thread(PRIVATE_THREAD_ID)
        assert thread is not None and thread.type is discord.ChannelType.private_thread
        general = guild.get_channel(FakeDiscord.CHANNEL_ID)
        assert isinstance(general, discord.TextChannel)
        assert general.permissions_for(everyone).view_channel

        await fake.make_private(FakeDiscord.CHANNEL_ID)
        await fake.wait_for(
            lambda: True if not general.permissions_for(everyone).view_channel else None,
            5,
            "CHANNEL_UPDATE making the channel private",
        )
        assert general.permissions_for(me).view_channel
        await fake.make_public(FakeDiscord.CHANNEL_ID)
        await fake.wait_for(
            lambda: True if general.permissions_for(everyone).view_channel else None,
            5,
            "CHANNEL_UPDATE making it public again",
        )
    finally:
        await bot.close()
        await asyncio.wait_for(task, 5)


PRIVATE_CHANNEL_ID = 1_200_000_000_000_000_081
PRIVATE_THREAD_ID = 1_200_000_000_000_000_082
