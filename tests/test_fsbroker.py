"""The embedded broker hands each message to exactly one consumer, and only whole messages."""
from __future__ import annotations

import threading
from pathlib import Path

from kombu import Connection


def connection(folder: Path) -> Connection:
    for sub in ("queue", "processed", "control"):
        (folder / sub).mkdir(exist_ok=True)
    return Connection("wffs://", transport_options={
        "data_folder_in": str(folder / "queue"), "data_folder_out": str(folder / "queue"),
        "processed_folder": str(folder / "processed"), "control_folder": str(folder / "control"),
    })


def test_concurrent_consumers_never_get_the_same_message(tmp_path):
    with connection(tmp_path) as conn:
        queue = conn.SimpleQueue("race")
        for n in range(300):
            queue.put({"n": n})
        queue.close()
    received: list[int] = []

    def consume():
        with connection(tmp_path) as conn:
            queue = conn.SimpleQueue("race")
            while True:
                try:
                    message = queue.get(timeout=0.5)
                except Exception:
                    break
                received.append(message.payload["n"])
                message.ack()
            queue.close()

    threads = [threading.Thread(target=consume) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(received) == list(range(300))


def test_a_message_still_being_written_is_not_taken(tmp_path):
    with connection(tmp_path) as conn:
        (tmp_path / "queue" / ".000_x.partial.msg.part").write_bytes(b'{"half')
        queue = conn.SimpleQueue("partial")
        assert queue.qsize() == 0
        queue.put({"whole": True})
        assert queue.get(timeout=1).payload == {"whole": True}
        queue.close()
