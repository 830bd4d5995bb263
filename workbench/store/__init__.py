"""The run store: SQLite (WAL) tables every process can read while a run writes.

Imports only the standard library (pyarrow lazily for Parquet export), so the torch-free
dashboard can use it.
"""

from workbench.store._commands import COMMANDS, check_command
from workbench.store._lease import CRASHED, Lease
from workbench.store.runstore import RUN_STATES, STATUSES, RunStore
from workbench.store.schema import SCHEMA_VERSION

__all__ = ["RunStore", "STATUSES", "RUN_STATES", "CRASHED", "COMMANDS", "check_command", "Lease", "SCHEMA_VERSION"]
