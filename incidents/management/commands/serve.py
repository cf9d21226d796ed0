"""`manage.py serve`: the admin on 127.0.0.1 with local worker processes (for `make serve`)."""
from __future__ import annotations

import argparse
import errno
import socket
from typing import Any

from django.core.management import call_command
from django.core.management.base import CommandError

from ._common import IncidentCommand, local_workers, positive_int


def port_number(text: str) -> int:
    """argparse type for --port."""
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 1 to 65535, not {text!r}")
    return int(text)


def refuse_a_busy_port(port: int) -> None:
    """Fail before any worker starts: runserver finds a busy port only after, and then leaves
    with os._exit(1), which runs no cleanup."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As runserver binds: a port left in TIME_WAIT by a server just stopped counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            why = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be used ({exc.strerror})"
            raise CommandError(f"port {port} on 127.0.0.1 {why}; stop what listens there, or "
                               f"choose another port with --port") from None


class Command(IncidentCommand):
    help = ("Start worker processes and the admin at http://127.0.0.1:PORT/admin/ until Ctrl+C "
            "(or SIGTERM, SIGHUP), then stop the workers.")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--port", type=port_number, default=8000)
        parser.add_argument("--workers", type=positive_int, default=2,
                            help="worker processes to start")

    def handle(self, *args: Any, **opts: Any) -> None:
        refuse_a_busy_port(opts["port"])
        with local_workers(self, "serve", opts["workers"]):
            self.stdout.write(f"{opts['workers']} workers running (logs in var/logs/); admin at "
                              f"http://127.0.0.1:{opts['port']}/admin/")
            call_command("runserver", f"127.0.0.1:{opts['port']}", use_reloader=False)
