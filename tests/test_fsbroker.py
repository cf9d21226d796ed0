"""The embedded broker hands each message to exactly one consumer, and only whole messages."""
from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from pathlib import Path

import pytest
from kombu import Connection

from .conftest import REQUIRE_SERVICES


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


@pytest.fixture
def small_disk(tmp_path):
    """A real 256 KiB file system (tmpfs) to fill up; needs root, as CI has."""
    if os.geteuid() != 0:
        message = "mounting a small tmpfs needs root"
        if REQUIRE_SERVICES:
            pytest.fail(message)
        pytest.skip(message)
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        # Lazily: this process keeps its broker liveness file there open until it exits.
        subprocess.run(["umount", "--lazy", str(disk)], check=True)


def fill_up(disk: Path) -> Path:
    filler = disk / "filler"
    with contextlib.suppress(OSError), open(filler, "wb", buffering=0) as f:
        while True:
            f.write(b"\0" * 4096)
    return filler


def test_a_full_disk_strands_no_message_and_the_broker_resumes_when_room_returns(small_disk):
    with connection(small_disk) as conn:
        queue = conn.SimpleQueue("full")
        queue.put({"n": 1})
        held = queue.get(timeout=5)
        filler = fill_up(small_disk)
        with pytest.raises(OSError):
            queue.put({"n": 2})  # a publish fails, and says so (the outbox relays it later)
        held.requeue()  # nor can a requeue write: the message must not stay held by us
        assert not list((small_disk / "queue").rglob(".*.part"))  # no partial files left
        assert not list((small_disk / "queue").rglob("*.msg"))
        filler.unlink()  # room again: the broker takes it up by itself
        again = queue.get(timeout=30)
        assert again.payload == {"n": 1} and again.delivery_info["redelivered"]
        again.ack()
        queue.close()
