"""The short soak that runs in every CI pass (`make soak` runs the long one): many
concurrent incidents through two workers, nothing lost, nothing handled twice."""
from __future__ import annotations

import pytest

from bench import soak

pytestmark = pytest.mark.e2e


def test_a_short_soak_loses_nothing_and_handles_nothing_twice(transactional_db, broker):
    result = soak.run(incidents=40, hops=15, workers=2, concurrency=2, timeout=240,
                      sample_seconds=1)
    assert result["complete_incidents"] == result["cleaned_incidents"] == 40
    assert result["stuck_messages"] == result["error_messages"] == 0
    assert result["incidents_with_lost_or_extra_hops"] == 0
    # Each incident: 16 hops and its cleanup, all COMPLETE.
    assert result["messages_complete"] == 40 * 17
