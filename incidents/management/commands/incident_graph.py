"""`manage.py incident_graph ID [-o FILE] [--format svg|png|dot]`: draw an incident's graph."""
from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO, cast

from django.core.management.base import CommandError

from incidents.engine import graph, incidents_db
from incidents.exceptions import WorkflowError

from ._common import IncidentCommand


class Command(IncidentCommand):
    help = ("Draw the graph of one incident from its message log, from Start to how it ended, "
            "with a legend (DOT text, SVG or PNG).")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("incident_id", help="the IncidentID, or its first 8+ characters")
        parser.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")
        parser.add_argument("--format", choices=graph.FORMATS, help="default: from -o's extension, else dot")

    def handle(self, *args: Any, incident_id: str, output: Path | None, **opts: Any) -> None:
        fmt = opts["format"] or (output.suffix.lstrip(".").lower() if output else "dot")
        if fmt not in graph.FORMATS:
            raise CommandError(f"cannot tell the format from {str(output)!r}; name the file "
                               ".svg, .png or .dot, or pass --format")
        if output is None and fmt == "png" and self.stdout.isatty():
            raise CommandError("a PNG would garble the terminal; write it to a file with -o FILE.png")
        try:
            data = graph.render(incidents_db.resolve(incident_id, where="graph"), fmt)
            if output:
                output.write_bytes(data)
        except WorkflowError as exc:
            raise CommandError(str(exc)) from exc
        except OSError as exc:
            raise CommandError(f"cannot write {str(output)!r}: {exc.strerror}") from exc
        if output:
            self.stdout.write(f"wrote {output} ({len(data)} bytes)")
        elif fmt == "png":
            self.stdout.flush()  # the text layer above may hold buffered output
            cast(BinaryIO, self.stdout.buffer).write(data)
        else:
            self.stdout.write(data.decode(), ending="")
