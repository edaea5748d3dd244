"""Which models see images: learned from their answers and kept in the database.

A model that refused image parts once (`ErrorKind.IMAGES_REFUSED`) is sent text only from then
on, by every process sharing the database and after a restart; one that took an image is known
to see. Unknown models are tried (VISION=auto). Read from the database on each image turn only
(a fleet's other process may have learned it), and remembered here for `/mnemo-admin model`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from storage.capabilities import ModelCapabilityRepository
from storage.errors import StorageError

log = logging.getLogger(__name__)


class Vision:
    def __init__(
        self, repository: ModelCapabilityRepository, *, enabled: bool, clock: Callable[[], float]
    ) -> None:
        self._repository = repository
        self.enabled = enabled  # VISION=auto
        self._clock = clock
        self._known: dict[str, bool] = {}

    async def sees(self, model: str) -> bool | None:
        """True or False when learned (by any process), None when never tried."""
        try:
            found = await self._repository.sees_images(model)
        except StorageError as error:
            log.warning("Could not read what model %s accepts: %s", model, error)
            return self._known.get(model)
        if found is not None:
            self._known[model] = found
        return found

    def known(self, model: str) -> bool | None:
        """What this process last read or learned of `model` (None: never tried)."""
        return self._known.get(model)

    def describe(self, model: str) -> str:
        """Whether `model` sees images, in a few words for `/mnemo-admin model show`."""
        if not self.enabled:
            return "off (VISION=off): images are never sent"
        seen = self._known.get(model)
        if seen is None:
            return "not known yet: the next image is sent, and its answer tells"
        if seen:
            return "yes"
        return "no: it refused an image, so images go as a line of text"

    async def may_send(self, model: str) -> bool:
        """Whether images go to `model` on this turn."""
        return self.enabled and await self.sees(model) is not False

    async def learn(self, model: str, sees: bool) -> None:
        if self._known.get(model) is sees:
            return
        self._known[model] = sees
        if not sees:
            log.warning("Model %s refused image input; it is sent text only from now on", model)
        try:
            await self._repository.learn_sees_images(model, sees, now=self._clock())
        except StorageError as error:
            log.warning("Could not record what model %s accepts: %s", model, error)
