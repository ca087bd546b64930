from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cutover.ledger import ledger_url_for, open_ledger, start_run
from tests.compare.factories import LedgerRun


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[LedgerRun]:
    """A started run in a fresh SQLite ledger file."""
    engine = open_ledger(ledger_url_for(tmp_path))
    start_run(engine, "run-1", "shadow", {"mirror": True})
    yield LedgerRun(engine, "run-1")
    engine.dispose()
