"""The embedded broker: kombu's filesystem transport, made safe for several processes.

kombu writes a message file in place and takes it by moving it to the system temp folder,
so a reader can pick up a half-written file, and a move across file systems can hand one
message to two readers. Here a message is written under a hidden name and renamed into
the queue folder when complete, and taken by an atomic rename within the broker folder.
"""
from __future__ import annotations

import os
import uuid
from queue import Empty
from time import monotonic
from typing import Any

from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads


class Channel(filesystem.Channel):
    def _put(self, queue: str, message: Any, **kwargs: Any) -> None:  # type: ignore[override]
        name = f"{round(monotonic() * 1000):015d}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = os.path.join(self.data_folder_out, f".{name}.part")
        with open(partial, "wb") as f:
            f.write(str_to_bytes(dumps(message)))
        os.replace(partial, final)

    def _get(self, queue: str, timeout: float | None = None) -> Any:
        suffix = f".{queue}.msg"
        for name in sorted(os.listdir(self.data_folder_in)):
            if name.startswith(".") or name.partition(".")[2] != suffix[1:]:
                continue
            taken = os.path.join(self.processed_folder, f"{name}.{uuid.uuid4().hex}")
            try:
                os.rename(os.path.join(self.data_folder_in, name), taken)
            except FileNotFoundError:
                continue  # another consumer took it first
            with open(taken, "rb") as f:
                payload = f.read()
            os.remove(taken)
            return loads(bytes_to_str(payload))
        raise Empty()


class Transport(filesystem.Transport):
    Channel = Channel
