"""Alembic migrations of the ledger schema, run from `open_ledger`.

No `alembic.ini` is needed: `open_ledger` builds the Alembic `Config` here
and hands `env.py` its open connection. A ledger that has the tables but no
`alembic_version` table was created before migrations existed, and is
stamped with the first revision before it is upgraded.

To add a revision, write a file under `versions/` whose `down_revision`
is the current head, and add the table or column to the SQLModel classes
in `cutover/ledger.py` as well.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

__all__ = ["INITIAL", "LOCK_KEY", "current_revision", "head", "is_known", "stamp", "upgrade"]

INITIAL = "0001"
# PostgreSQL advisory lock held while migrating; any constant works as long
# as nothing else in the database uses it.
LOCK_KEY = 0x637574_6F766572

_FOLDER = Path(__file__).resolve().parent


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_FOLDER))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def head() -> str:
    """Return the newest revision this code knows."""
    revision = _scripts().get_current_head()
    assert revision is not None
    return revision


def is_known(revision: str) -> bool:
    return any(script.revision == revision for script in _scripts().walk_revisions())


def current_revision(connection: Connection) -> str | None:
    """Return the ledger's revision, or None when it has no version table."""
    return MigrationContext.configure(connection).get_current_revision()


def stamp(connection: Connection, revision: str) -> None:
    command.stamp(_config(connection), revision)


def upgrade(connection: Connection) -> None:
    command.upgrade(_config(connection), "head")
