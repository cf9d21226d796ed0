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


def test_a_message_held_by_a_dead_process_goes_back_marked_redelivered(tmp_path):
    import subprocess
    import sys

    with connection(tmp_path) as conn:
        queue = conn.SimpleQueue("held")
        queue.put({"n": 1})
        queue.close()
    # Another process takes the message and dies without acking it.
    taker = (
        "from incidents.engine import fsbroker\n"
        "from tests.test_fsbroker import connection\n"
        "from pathlib import Path\n"
        f"c = connection(Path({str(tmp_path)!r})); q = c.SimpleQueue('held'); q.get(timeout=5)\n"
        "import os; os._exit(9)\n"
    )
    assert subprocess.run([sys.executable, "-c", taker], timeout=60).returncode == 9
    with connection(tmp_path) as conn:
        queue = conn.SimpleQueue("held")
        assert queue.qsize() == 0
        assert conn.default_channel.recover_abandoned() == 1
        message = queue.get(timeout=1)
        assert message.payload == {"n": 1}
        assert message.delivery_info["redelivered"] is True
        message.ack()
        queue.close()
    assert [p.name for p in (tmp_path / "processed").iterdir() if not p.name.startswith(".")] == []


def test_a_file_that_is_not_a_message_is_set_aside(tmp_path):
    with connection(tmp_path) as conn:
        (tmp_path / "queue" / "000000000000001_x.junk.msg").write_bytes(b"\xff not json")
        queue = conn.SimpleQueue("junk")
        queue.put({"good": 1})
        assert queue.get(timeout=1).payload == {"good": 1}
        queue.close()
    assert (tmp_path / "processed" / ".unreadable-000000000000001_x.junk.msg").exists()


def test_messages_of_a_dead_holder_are_recovered_even_if_its_pid_was_reused(tmp_path):
    from incidents.engine import fsbroker

    with connection(tmp_path) as conn:
        queue = conn.SimpleQueue("reused")
        queue.put({"n": 7})
        message = queue.get(timeout=1)
        held = next(p for p in (tmp_path / "processed").iterdir() if not p.name.startswith("."))
        # Pretend its holder was process 1 (always alive) that left no liveness file.
        fake = held.with_name(f"{fsbroker.HOST}~1-deadbeef~{held.name.split('~', 2)[2]}")
        held.rename(fake)
        conn.default_channel._held.clear()
        assert conn.default_channel.recover_abandoned() == 1
        assert queue.get(timeout=1).payload == {"n": 7}
        del message
        queue.close()


def test_a_requeued_message_goes_back_to_the_head_of_its_queue_marked_redelivered(tmp_path):
    # A producer's messages come in the order it put them, even within one millisecond.
    # As on RabbitMQ: a message given back (its pool process died) must not wait behind the
    # whole queue, it may hold up others (an @atomic run's lock).
    with connection(tmp_path) as conn:
        queue = conn.SimpleQueue("requeue")
        for n in range(3):
            queue.put({"n": n})
        first = queue.get(timeout=1)
        first.requeue()
        again = queue.get(timeout=1)
        assert again.payload == {"n": 0}
        assert again.delivery_info["redelivered"] is True
        again.ack()
        assert [queue.get(timeout=1).payload["n"] for _ in range(2)] == [1, 2]
        queue.close()
