"""pytest plugin for mutation runs only (setup.cfg [mutmut] pytest_add_cli_args loads it): run the cheapest
tests first. mutmut runs a mutant's tests with -x, so a mutant that a fast test kills stops there instead
of after the slow ones. Durations come from mutmut's own stats pass (mutants/mutmut-stats.json)."""
from __future__ import annotations

import json
from pathlib import Path


def pytest_collection_modifyitems(items: list) -> None:
    try:
        durations = json.loads(Path("mutmut-stats.json").read_text())["duration_by_test"]
    except (OSError, ValueError, KeyError):
        return  # the stats pass itself: keep pytest's order
    items.sort(key=lambda item: durations.get(item.nodeid, 0.0))
