"""Importing this module registers every piece's implementation."""

from workbench.strategies import calibrations, estimators, memory, rewards, token  # noqa: F401
