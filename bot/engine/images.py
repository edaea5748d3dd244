"""The images of a turn: which go to the model, and what the turn teaches about the model.

A model not known to refuse images gets them (VISION=auto); one that refuses them gets the
same turn once more without, and that is learned for every later turn (in the database, for a
fleet and a restart: `bot.model.vision`). The user is told in a short note under the answer
when their images were not shown to the model.
"""

from __future__ import annotations

import dataclasses

from bot.engine.records import Answered, Failed, IncomingMessage
from bot.memory.prompt import Prompt
from bot.model.media import AttachedImage
from bot.model.vision import Vision
from bot.policy.access import ChannelView
from bot.policy.controls import Controls

CANNOT_SEE_NOTE = "This model cannot see images, so I answered from your text only."
IMAGES_OFF_NOTE = "Images are not shown to the model here, so I answered from your text only."
IMAGES_DID_NOT_FIT_NOTE = "Not every image fit in what the model can take; some were left out."

Images = tuple[AttachedImage, ...]
Notes = tuple[str, ...]


class TurnImages:
    def __init__(self, vision: Vision, controls: Controls) -> None:
        self._vision = vision
        self._controls = controls

    async def for_turn(self, incoming: IncomingMessage) -> tuple[Images, Notes]:
        """The images that go to the model with this turn, and a note when some do not."""
        if not incoming.images:
            return (), ()
        if not self._vision.enabled:
            return (), (IMAGES_OFF_NOTE,)
        if not await self._vision.may_send(self._controls.model_for(incoming.view)):
            return (), (CANNOT_SEE_NOTE,)
        return incoming.images, ()

    async def refused(self, view: ChannelView) -> tuple[Images, Notes]:
        """The model refused the images: learned for every later turn; this one goes again
        without them."""
        await self._vision.learn(self._controls.model_for(view), False)
        return (), (CANNOT_SEE_NOTE,)

    async def settle(
        self,
        view: ChannelView,
        sent: Images,
        prompt: Prompt,
        answer: Answered | Failed,
        notes: Notes,
    ) -> Answered | Failed:
        """After the answer: a model that answered images sees them (learned), and the notes
        for the user join the answer (with one when not every image fit the prompt)."""
        if prompt.images and isinstance(answer, Answered):
            await self._vision.learn(self._controls.model_for(view), True)
        if sent and prompt.images < len(sent):
            notes += (IMAGES_DID_NOT_FIT_NOTE,)
        if notes and isinstance(answer, Answered):
            answer = dataclasses.replace(answer, notes=answer.notes + notes)
        return answer
