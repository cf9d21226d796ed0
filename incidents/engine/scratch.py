"""Per-incident scratch directories (the seed's hotspots/): made on demand by a handler,
removed by the incident's cleanup. Workers on several machines need the root on shared
storage (a volume in docker-compose.yml)."""
from __future__ import annotations

import shutil
from pathlib import Path

from django.conf import settings

from incidents import conf


def root() -> Path:
    return Path(conf.get("SCRATCH_DIR") or Path(settings.VAR_DIR) / "incidents")


def directory(incident_id: str) -> Path:
    """The incident's scratch directory, created if missing."""
    path = root() / incident_id
    path.mkdir(parents=True, exist_ok=True)
    return path


def remove(incident_id: str) -> bool:
    """Remove the incident's scratch directory; False if it had none."""
    path = root() / incident_id
    if not path.exists():
        return False
    shutil.rmtree(path)
    return True
