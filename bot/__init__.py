"""Mnemo: a Discord chatbot that remembers.

The layers, each importing only from the ones before it (`tests/project/test_layers.py` holds it):

    config → storage → model, runtime → policy → memory → engine → app → client → cogs

- config    `bot.config`: the settings, read once (with `storage.url` and `storage.errors`,
            which depend on nothing and parse DATABASE_URL for it)
- storage   `storage/`: repositories over one `Database` seam, a backend per URL scheme
            (`storage.connect`); the only place that imports a database driver
- model     `bot.model`: the OpenAI-compatible client, its slots (scheduler), tokens, the
            one check of the model server (probe)
- runtime   `bot.runtime`: background jobs, the fleet's leases, keyed ordering, heartbeat
            (beside `model`: neither imports the other)
- policy    `bot.policy`: who may talk where (access), per-place controls, limits, fact rules
- memory    `bot.memory`: what is learned (summary, facts), recalled and put into a prompt
- engine    `bot.engine`: `MemoryEngine`, the one façade the Discord side calls
- app       `bot.app`: the composition root that makes the LLM client and the engine (used
            by the bot, the tests and the bench alike)
- client    `bot.client`: the discord.py side (the Bot, replies, splitting, places, buttons)
- cogs      `cogs/`: listeners and commands; they import the engine and the client, never
            each other

Only `bot.client`, `cogs` and the process's entry (`bot.__main__`, `bot.startup`,
`bot.health`, `bot.logs`) import discord.
"""
