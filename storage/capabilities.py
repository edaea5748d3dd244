"""What each model was found to accept (learned from its answers): whether it sees images."""

from __future__ import annotations

from storage.database import Database


class ModelCapabilityRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def sees_images(self, model: str) -> bool | None:
        """True when the model took an image, False when it refused one, None when unknown."""
        row = await self._db.fetch_one(
            "SELECT sees_images FROM model_capabilities WHERE model = ?", (model,)
        )
        return None if row is None else bool(row["sees_images"])

    async def learn_sees_images(self, model: str, sees: bool, *, now: float) -> None:
        await self._db.write_one(
            "INSERT INTO model_capabilities (model, sees_images, learned_at) VALUES (?, ?, ?)"
            " ON CONFLICT (model) DO UPDATE SET sees_images = excluded.sees_images,"
            " learned_at = excluded.learned_at",
            (model, 1 if sees else 0, now),
        )
