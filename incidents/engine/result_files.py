"""Result files handlers attach to their incident (workflow.AttachResult), and their retention.

A file is stored at <IncidentID>/<token>/<name> in the results storage (models.ResultFile).
Inside a handler it is written in the handler's commit, with its row: a handler that raises,
or a run that is dropped, stores nothing. If a commit is rolled back after the file was
written (its process died, the database refused), the file stays without a row; the token is
the MessageID, so the message's rerun overwrites that same file, and `prune_results` deletes
what no rerun claimed (files without a row, older than ORPHAN_GRACE).
"""
from __future__ import annotations

import logging
import mimetypes
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

from django.core.files import File
from django.core.files.storage import Storage
from django.db import transaction
from django.utils import timezone

from incidents import conf
from incidents.engine import context, incidents_db
from incidents.engine.validation import check_incident_id, check_text
from incidents.exceptions import (
    MessageError,
    MessageTypeError,
    UnknownResult,
    WorkflowConfigError,
)
from incidents.models import LIVE_INCIDENT_STATUSES, ResultFile

logger = logging.getLogger(__name__)

#: Types the admin shows inline (an <img>); every other file is a download.
INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/svg+xml", "image/webp"})
#: A file in the storage without a row is deleted by prune() once this old: younger ones may
#: belong to a commit in progress.
ORPHAN_GRACE = timedelta(hours=1)
#: Expired results an incident's cleanup deletes at most, so its commit stays short.
CLEANUP_BATCH = 100
SPOOL_BYTES = 8 * 1024 * 1024  # attached files larger than this wait for the commit on disk

_NAME = re.compile(r"\w[\w .,()+=~-]{0,99}")
_CONTENT_TYPE = re.compile(r"[\w.+-]+/[\w.+-]+(\s*;\s*[\w.+-]+=[\w.+\"-]+)*")


def storage() -> Storage:
    return ResultFile._meta.get_field("file").storage  # type: ignore[attr-defined, no-any-return]


def check_name(name: Any, *, where: str) -> str:
    name = check_text(name, where=where, name="name", max_length=100, empty_ok=False)
    if not _NAME.fullmatch(name):
        raise MessageError(f"{where}: result name {name!r} is not a plain file name; use up to "
                           "100 letters, digits, spaces and . , ( ) + = ~ - _, starting with a "
                           "letter or digit (no folders), e.g. 'map.png'")
    return name


def check_content_type(content_type: Any, name: str, *, where: str) -> str:
    if content_type is None:
        return mimetypes.guess_type(name)[0] or "application/octet-stream"
    content_type = check_text(content_type, where=where, name="content_type", max_length=100)
    if not _CONTENT_TYPE.fullmatch(content_type):
        raise MessageError(f"{where}: content_type {content_type!r} is not a MIME type; give "
                           "one like 'image/png' or 'text/csv; charset=utf-8', or leave it out "
                           "to guess it from the name")
    return content_type


def retention_days() -> float:
    """WORKFLOW_RESULTS_RETENTION_DAYS, checked: a number of days >= 0 (0: keep for ever)."""
    return conf.non_negative("RESULTS_RETENTION_DAYS", unit="days", example="30",
                             meaning="0 keeps result files for ever")


@dataclass
class _Attachment:
    incident_id: str
    name: str
    title: str
    content_type: str
    content: IO[bytes]
    size: int
    handler: str


def attach(incident_id: Any, path_or_name: Any, data: Any = None, *, title: Any = "",
           content_type: Any = None) -> str:
    """Attach a file (a path, or a name and `data`) to the incident; return its name. Inside a
    handler it is stored by the handler's commit; outside, at once."""
    where = "AttachResult()"
    incident_id = check_incident_id(incident_id, where=where)
    title = check_text(title, where=where, name="title", max_length=200)
    if data is None:
        name, content, size = _snapshot(path_or_name, where)
    else:
        name = check_name(path_or_name, where=where)
        content, size = _spool_data(data, where)
    content_type = check_content_type(content_type, name, where=where)
    run = context.current_run.get()
    if run is None or incident_id != run.incident_id:
        incidents_db.require(incident_id, where=where)
    item = _Attachment(incident_id, name, title, content_type, content, size,
                       run.originator if run is not None else "")
    if run is None:
        _store_now(item)
    else:
        # Rerun of the same message: the same token, so its file is overwritten, not doubled.
        token = run.message_id or str(uuid.uuid4())
        run.in_commit.append(lambda: _store(item, token))
    return name


def _snapshot(path: Any, where: str) -> tuple[str, IO[bytes], int]:
    """The file as it is now (the handler may change or remove it before its commit)."""
    if not isinstance(path, (str, Path)):
        raise MessageTypeError(f"{where}: {path!r:.80} is neither a file path nor, with data=, "
                               "a name; pass a path, or a name and data=bytes")
    path = Path(path)
    if not path.is_file():
        raise MessageError(f"{where}: no file at {str(path)!r}; give the path of a file, or a "
                           "name and data=bytes")
    name = check_name(path.name, where=where)
    spool = _spool()
    with path.open("rb") as source:
        shutil.copyfileobj(source, spool)
    return name, spool, spool.tell()


def _spool_data(data: Any, where: str) -> tuple[IO[bytes], int]:
    if isinstance(data, str):
        data = data.encode("utf-8")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MessageTypeError(f"{where}: data is a {type(data).__name__}; give bytes or str "
                               "(text is stored as UTF-8), or a path without data")
    spool = _spool()
    spool.write(data)
    return spool, spool.tell()


def _spool() -> IO[bytes]:
    # Open until the commit stores it; closed (and its disk copy gone) when the run is dropped.
    return tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # type: ignore[return-value]


def _write(item: _Attachment, token: str) -> str:
    path = f"{item.incident_id}/{token}/{item.name}"
    store = storage()
    if store.exists(path):  # left by a run whose commit rolled back: this run replaces it
        store.delete(path)
    item.content.seek(0)
    saved = store.save(path, File(item.content, name=item.name))
    item.content.close()  # written: its memory (or temporary file) is no longer needed
    return saved


def _store(item: _Attachment, token: str) -> None:
    """Write the file and its row in the caller's transaction (the handler's commit)."""
    _save_row(item, _write(item, token))


def _store_now(item: _Attachment) -> None:
    saved = _write(item, str(uuid.uuid4()))
    try:
        with transaction.atomic():
            _save_row(item, saved)
    except BaseException:
        _delete_files([saved])
        raise


def _save_row(item: _Attachment, saved: str) -> None:
    old = (ResultFile.objects.filter(incident_id=item.incident_id, name=item.name)
           .values_list("file", flat=True).first())
    ResultFile.objects.update_or_create(
        incident_id=item.incident_id, name=item.name,
        defaults={"title": item.title, "content_type": item.content_type, "size": item.size,
                  "file": saved, "handler": item.handler, "created": timezone.now()})
    if old and old != saved:  # the file of the result it replaces
        transaction.on_commit(lambda: _delete_files([old]))


def open_result(incident_id: Any, name: Any) -> File:
    """The committed result file `name` of the incident, open for reading (binary)."""
    where = "OpenResult()"
    incident_id = check_incident_id(incident_id, where=where)
    name = check_text(name, where=where, name="name", max_length=100, empty_ok=False)
    incidents_db.require(incident_id, where=where)
    row = ResultFile.objects.filter(incident_id=incident_id, name=name).first()
    if row is None:
        names = list(ResultFile.objects.filter(incident_id=incident_id)
                     .values_list("name", flat=True))
        raise UnknownResult(f"{where}: incident {incident_id} has no result file {name!r}; it "
                            f"has {names or 'none'} (a result attached by a running handler "
                            "shows once that handler has returned)", incident_id=incident_id)
    return storage().open(row.file.name, "rb")


def _expired(now: datetime) -> Any:
    """Results past retention whose incident has ended; None when results are kept for ever."""
    days = retention_days()
    if days == 0:
        return None
    return (ResultFile.objects.filter(created__lt=now - timedelta(days=days))
            .exclude(incident__status__in=LIVE_INCIDENT_STATUSES))


def delete_expired(*, limit: int | None = None, now: datetime | None = None,
                   dry_run: bool = False) -> list[str]:
    """Delete the rows of expired results (in the caller's transaction) and, once it commits,
    their files; return the files' names."""
    expired = _expired(now or timezone.now())
    if expired is None:
        return []
    rows = list(expired.order_by("created").values_list("pk", "file")[:limit])
    if rows and not dry_run:
        ResultFile.objects.filter(pk__in=[pk for pk, _ in rows]).delete()
        transaction.on_commit(lambda: _delete_files([name for _, name in rows]))
    return [name for _, name in rows]


def expire_batch() -> int:
    """An incident's cleanup deletes up to CLEANUP_BATCH expired results (of any incident),
    so retention holds without a cron job. A bad retention setting is logged, not raised:
    it must not stop cleanups."""
    try:
        return len(delete_expired(limit=CLEANUP_BATCH))
    except WorkflowConfigError as exc:
        logger.error("result files are not pruned: %s", exc)
        return 0


def orphan_files(*, now: datetime | None = None) -> list[str]:
    """Files at <incident>/<token>/<name> in the storage that no row names, older than
    ORPHAN_GRACE (left by a rolled-back commit, or by a deleted incident)."""
    store, known = storage(), set(ResultFile.objects.values_list("file", flat=True))
    cutoff = (now or timezone.now()) - ORPHAN_GRACE
    found = []
    for incident_dir in _listdir(store, "")[0]:
        for token_dir in _listdir(store, incident_dir)[0]:
            folder = f"{incident_dir}/{token_dir}"
            for name in _listdir(store, folder)[1]:
                path = f"{folder}/{name}"
                if path not in known and _modified_before(store, path, cutoff):
                    found.append(path)
    return sorted(found)


def _listdir(store: Storage, path: str) -> tuple[list[str], list[str]]:
    try:
        return store.listdir(path)
    except FileNotFoundError:  # the default folder before the first result
        return [], []


def _modified_before(store: Storage, path: str, cutoff: datetime) -> bool:
    try:
        return store.get_modified_time(path) < cutoff
    except (NotImplementedError, OSError):  # a storage that cannot tell: keep the file
        return False


@dataclass
class Pruned:
    expired: list[str]
    orphans: list[str]


def prune(*, now: datetime | None = None, dry_run: bool = False) -> Pruned:
    """Apply WORKFLOW_RESULTS_RETENTION_DAYS, and delete orphaned files (`prune_results`)."""
    with transaction.atomic():
        expired = delete_expired(now=now, dry_run=dry_run)
    orphans = orphan_files(now=now)
    if not dry_run:
        _delete_files(orphans)
    return Pruned(expired, orphans)


def _delete_files(names: list[str]) -> None:
    store = storage()
    for name in names:
        try:
            store.delete(name)
        except OSError:  # a file already gone is no reason to fail a prune or a commit
            logger.warning("result file %s could not be deleted", name, exc_info=True)
            continue
        _remove_empty_folders(store, name)


def _remove_empty_folders(store: Storage, name: str) -> None:
    """On a local storage, remove the token and incident folders the file leaves empty."""
    parts = name.split("/")[:-1]
    while parts:
        try:
            Path(store.path("/".join(parts))).rmdir()
        except (NotImplementedError, OSError):  # remote storage, or not empty: done
            return
        parts.pop()
