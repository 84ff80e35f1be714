"""The no-server broker's transport: kombu's folder broker, with whole messages.

kombu's filesystem transport creates a message file and then writes into it,
while a polling worker lists the folder, moves every file named for its queue
and reads it at once, without taking the writer's lock. A worker that polls
between the two steps reads an empty or half-written file, fails to decode it
and dies, and the message is lost (seen here on the import and embedding
queues: ``JSONDecodeError`` in ``kombu/transport/filesystem.py``). Here a
message is written under a name no queue reads (``….msg.part``) and renamed
into place, which is atomic within a folder, so a reader sees a message whole
or not at all.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

# The alias that names this transport in TRANSPORT_ALIASES.
ALIAS = "filesystem"


class Channel(filesystem.Channel):
    """A folder-broker channel whose messages appear in one atomic rename."""

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # A reader matches the text after the first dot against "<queue>.msg";
        # "<queue>.msg.part" never matches, so the partial file is invisible.
        partial = f"{final}.part"
        try:
            with open(partial, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    """kombu's filesystem transport with :class:`Channel`."""

    Channel = Channel


def install() -> None:
    """Make ``filesystem://`` broker URLs use this transport in this process
    (the web process that sends and the worker that receives both call it when
    the Celery app is created)."""
    TRANSPORT_ALIASES[ALIAS] = f"{__name__}:Transport"
