"""The run store: SQLite (WAL) tables every process can read while a run writes.

Imports only the standard library (pyarrow lazily for Parquet export), so the torch-free
dashboard can use it.
"""

from workbench.store.runstore import STATUSES, RunStore
from workbench.store.schema import SCHEMA_VERSION

__all__ = ["RunStore", "STATUSES", "SCHEMA_VERSION"]
