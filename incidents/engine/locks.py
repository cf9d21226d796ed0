"""Leased per-incident locks, in the database or (WORKFLOW_REDIS_URL) in Redis."""
from __future__ import annotations

import functools
import logging
import os
import random
import threading
import time
from datetime import timedelta
from typing import Any, Protocol

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from incidents import conf
from incidents.models import Lock

logger = logging.getLogger(__name__)

try:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    #: Errors meaning the lock store is out of reach for now (the message waits and retries).
    UNAVAILABLE: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError)
except ImportError:  # redis is optional
    UNAVAILABLE = ()


class LockBackend(Protocol):
    def acquire(self, label: str, incident_id: str, owner: str, lease: float,
                heir_of: str = "") -> bool: ...
    def renew(self, label: str, incident_id: str, owner: str, lease: float) -> bool: ...
    def release(self, label: str, incident_id: str, owner: str) -> bool: ...
    def release_left_by(self, label: str, incident_id: str, owner_prefix: str) -> bool: ...
    def is_locked(self, label: str, incident_id: str) -> bool: ...
    def clear(self, incident_id: str) -> int: ...


class DatabaseLocks:
    """Locks as rows with a unique (incident, label); an expired row may be taken over."""

    def acquire(self, label: str, incident_id: str, owner: str, lease: float,
                heir_of: str = "") -> bool:
        now = timezone.now()
        expires = now + timedelta(seconds=lease)
        try:
            with transaction.atomic():
                Lock.objects.create(incident_id=incident_id, label=label, owner=owner,
                                    acquired_at=now, expires_at=expires)
            return True
        except IntegrityError:
            # Held: take it only if the lease ran out, we hold it already (re-entrant), or
            # its holder is one we inherit from (an earlier, dead run of the same message).
            takeover = Q(expires_at__lte=now) | Q(owner=owner)
            if heir_of:
                takeover |= Q(owner__startswith=heir_of)
            return bool(
                Lock.objects.filter(incident_id=incident_id, label=label).filter(takeover)
                .update(owner=owner, acquired_at=now, expires_at=expires)
            )

    def renew(self, label: str, incident_id: str, owner: str, lease: float) -> bool:
        return bool(Lock.objects.filter(incident_id=incident_id, label=label, owner=owner)
                    .update(expires_at=timezone.now() + timedelta(seconds=lease)))

    def release(self, label: str, incident_id: str, owner: str) -> bool:
        deleted, _ = Lock.objects.filter(incident_id=incident_id, label=label, owner=owner).delete()
        return bool(deleted)

    def release_left_by(self, label: str, incident_id: str, owner_prefix: str) -> bool:
        deleted, _ = Lock.objects.filter(incident_id=incident_id, label=label,
                                         owner__startswith=owner_prefix).delete()
        return bool(deleted)

    def is_locked(self, label: str, incident_id: str) -> bool:
        return Lock.objects.filter(incident_id=incident_id, label=label,
                                   expires_at__gt=timezone.now()).exists()

    def clear(self, incident_id: str) -> int:
        deleted, _ = Lock.objects.filter(incident_id=incident_id).delete()
        return deleted


class RedisLocks:
    """Locks as Redis keys with a TTL; release and takeover check the owner atomically."""

    _RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
    _RELEASE_LEFT = ("local v = redis.call('get', KEYS[1]) if v and string.sub(v, 1, #ARGV[1]) "
                     "== ARGV[1] then return redis.call('del', KEYS[1]) end return 0")
    _RENEW = ("if redis.call('get', KEYS[1]) == ARGV[1] then "
              "return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0")
    _ACQUIRE = (
        "local v = redis.call('get', KEYS[1]) "
        "if v == false or v == ARGV[1] or (ARGV[3] ~= '' and string.sub(v, 1, #ARGV[3]) == ARGV[3]) "
        "then redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end return 0"
    )

    def __init__(self, url: str) -> None:
        import redis

        self.client: Any = redis.Redis.from_url(url)
        self._acquire = self.client.register_script(self._ACQUIRE)
        self._release = self.client.register_script(self._RELEASE)
        self._renew = self.client.register_script(self._RENEW)
        self._release_left = self.client.register_script(self._RELEASE_LEFT)

    @staticmethod
    def _key(label: str, incident_id: str) -> str:
        return f"workflow:lock:{incident_id}:{label}"

    def acquire(self, label: str, incident_id: str, owner: str, lease: float,
                heir_of: str = "") -> bool:
        return bool(self._acquire(keys=[self._key(label, incident_id)],
                                  args=[owner, max(1, int(lease * 1000)), heir_of]))

    def renew(self, label: str, incident_id: str, owner: str, lease: float) -> bool:
        return bool(self._renew(keys=[self._key(label, incident_id)],
                                args=[owner, max(1, int(lease * 1000))]))

    def release(self, label: str, incident_id: str, owner: str) -> bool:
        return bool(self._release(keys=[self._key(label, incident_id)], args=[owner]))

    def release_left_by(self, label: str, incident_id: str, owner_prefix: str) -> bool:
        return bool(self._release_left(keys=[self._key(label, incident_id)], args=[owner_prefix]))

    def is_locked(self, label: str, incident_id: str) -> bool:
        return bool(self.client.exists(self._key(label, incident_id)))

    def clear(self, incident_id: str) -> int:
        keys = list(self.client.scan_iter(match=self._key("*", incident_id), count=500))
        return int(self.client.delete(*keys)) if keys else 0


@functools.cache
def _backend_for(redis_url: str) -> LockBackend:
    return RedisLocks(redis_url) if redis_url else DatabaseLocks()


def backend() -> LockBackend:
    return _backend_for(conf.get("REDIS_URL"))


def lease() -> float:
    return float(conf.get("LOCK_LEASE_SECONDS"))


def retry_delay(attempt: int) -> float:
    """A short delay that grows with each try, jittered so waiters do not move in step."""
    low, high = conf.get("RETRY_MIN_SECONDS"), conf.get("RETRY_MAX_SECONDS")
    delay: float = min(high, low * (2 ** min(attempt, 20)))
    return delay * random.uniform(0.75, 1.25)


def wait_for(label: str, incident_id: str, owner: str, timeout: float | None) -> bool:
    """Block until the lock is taken (True) or `timeout` seconds pass (False)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    attempt = 0
    while not take(label, incident_id, owner):
        delay = retry_delay(attempt)
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            delay = min(delay, remaining)
        time.sleep(delay)
        attempt += 1
    return True



class LeaseRenewer:
    """Renews the leases of the locks this process holds, from one background thread, so a
    handler that runs for longer than a lease keeps its locks; a dead process stops renewing
    and its locks expire."""

    def __init__(self) -> None:
        self._held: dict[tuple[str, str, str], float] = {}  # key -> when last (re)newed
        self._guard = threading.Lock()
        self._pid: int | None = None

    def hold(self, label: str, incident_id: str, owner: str) -> None:
        with self._guard:
            self._held[(label, incident_id, owner)] = time.monotonic()
            if self._pid != os.getpid():  # first use, or first use after a fork
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="workflow-leases", daemon=True).start()

    def drop(self, label: str, incident_id: str, owner: str) -> None:
        with self._guard:
            self._held.pop((label, incident_id, owner), None)

    def forget_all(self) -> None:
        """Stop renewing every lock (a test's: its database is gone with it)."""
        with self._guard:
            self._held.clear()

    def _run(self) -> None:
        from django.db import connection

        while True:
            period = lease() / 3
            time.sleep(min(period, 1.0))
            now = time.monotonic()
            with self._guard:
                due = [key for key, renewed in self._held.items() if now - renewed >= period]
            if not due:
                continue
            try:
                for key in due:
                    if not backend().renew(*key, lease()):
                        logger.warning("incident %s: lock %r expired before it was renewed",
                                       key[1], key[0])
                    with self._guard:
                        if key in self._held:
                            self._held[key] = now
            except Exception:  # a database or Redis outage must not end renewal for good
                logger.warning("lock renewal failed; will retry", exc_info=True)
            finally:
                connection.close()


renewer = LeaseRenewer()


def take(label: str, incident_id: str, owner: str, heir_of: str = "") -> bool:
    """Acquire without waiting; a lock taken is renewed until given back. A lock held by an
    owner starting with `heir_of` is taken over (a dead earlier run of the same message)."""
    if backend().acquire(label, incident_id, owner, lease(), heir_of):
        renewer.hold(label, incident_id, owner)
        return True
    return False


def take_waiting(label: str, incident_id: str, owner: str, wait: float,
                 heir_of: str = "") -> bool:
    """take(), waiting for the lock here up to `wait` seconds; polls with a read, from 1 ms
    up to 20 ms, so a busy lock costs no failed inserts and a short hold a short wait."""
    started = time.monotonic()
    pause = 0.001
    while not take(label, incident_id, owner, heir_of):
        while True:
            if time.monotonic() + pause > started + wait:
                if wait:
                    logger.info("incident %s: %s busy for %.1f ms; giving up the wait",
                                incident_id, label, 1000 * (time.monotonic() - started))
                return False
            time.sleep(pause)
            pause = min(pause * 2, 0.02)
            if not backend().is_locked(label, incident_id):
                break
    if pause > 0.001:
        logger.info("incident %s: waited %.1f ms for %s",
                    incident_id, 1000 * (time.monotonic() - started), label)
    return True


def give_back(label: str, incident_id: str, owner: str) -> bool:
    renewer.drop(label, incident_id, owner)
    return backend().release(label, incident_id, owner)
