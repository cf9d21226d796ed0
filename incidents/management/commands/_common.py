"""Helpers shared by the incident management commands."""
from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import logging
import os
from collections.abc import Iterator
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from incidents.exceptions import WorkflowError
from incidents.processes import Interrupted, WorkerGroup, interruptible, worker_env

#: The engine's and the workflows' loggers; their INFO lines are for workers, not commands.
ENGINE_LOGGERS = ("incidents", "workflows")
#: Django's --verbosity (0-3) -> the least severe log line a command shows.
LOG_LEVEL_BY_VERBOSITY = {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO, 3: logging.DEBUG}


class IncidentCommand(BaseCommand):
    """A command that prints its result on stdout; the engine's log lines show from -v 2."""

    def execute(self, *args: Any, **options: Any) -> Any:
        level = LOG_LEVEL_BY_VERBOSITY.get(options.get("verbosity", 1), logging.DEBUG)
        loggers = [logging.getLogger(name) for name in ENGINE_LOGGERS]
        # Restored afterwards: call_command() may run in a process that keeps logging.
        saved = [logger.level for logger in loggers]
        for logger in loggers:
            logger.setLevel(max(level, logger.getEffectiveLevel()))
        try:
            return super().execute(*args, **options)
        finally:
            for logger, old in zip(loggers, saved, strict=True):
                logger.setLevel(old)


def positive_int(text: str) -> int:
    """argparse type for counts such as --limit."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text!r}")
    return value


def confirm(question: str) -> bool:
    """Ask on the terminal, as `celery purge` does; only y or yes goes ahead."""
    try:
        answer = input(f"{question} [y/N] ")
    except (EOFError, OSError):  # no terminal to answer (a script without --noinput)
        return False
    return answer.strip().lower() in ("y", "yes")


def json_object(text: str | None, option: str) -> dict[str, Any] | None:
    """Parse an option's JSON object, or raise CommandError saying what to fix."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, huge numbers, deep nesting
        raise CommandError(f"{option}: not valid JSON ({exc}); give an object such as "
                           '\'{"size": 1000}\'') from None
    if not isinstance(value, dict):
        raise CommandError(f"{option}: {text!r} is JSON but not an object; wrap it in {{...}}")
    return value


def operator() -> str:
    """Who runs the command, recorded as who ended an incident."""
    try:
        return f"{getpass.getuser()} (command line)"
    except Exception:  # no user name in this environment
        return "command line"


@contextlib.contextmanager
def local_workers(command: BaseCommand, prefix: str, count: int) -> Iterator[WorkerGroup]:
    """Start `count` workers (prefix1, prefix2, ...) for the command's lifetime and stop them on
    every way out: the block's end, an exception, SIGINT, SIGTERM or SIGHUP. A signal ends
    the command with exit code 128 + its number, after one line on stderr (no traceback)."""
    try:
        with interruptible(), WorkerGroup(env=worker_env(), node_suffix=f"-{os.getpid()}") as group:
            try:
                for n in range(1, count + 1):
                    try:
                        group.start(f"{prefix}{n}")
                    except WorkflowError as exc:  # it did not start: its log says why
                        raise CommandError(str(exc)) from None
                yield group
            except Interrupted as exc:  # said before the warm stop, which takes seconds
                with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
                    command.stderr.write(f"{exc}: stopping the workers")
                raise
    except Interrupted as exc:
        raise SystemExit(exc.exit_code) from None
