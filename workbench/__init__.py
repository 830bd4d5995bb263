"""RLVR Collapse Workbench: watch and calibrate what RL with verifiable rewards does to a
language model's diversity.

The public object is :class:`workbench.session.Session` (imported lazily so that
``import workbench`` stays light and side-effect free)."""

__version__ = "0.1.0"

__all__ = ["RunConfig", "Session", "__version__"]


def __getattr__(name: str):
    if name == "Session":
        from workbench.session import Session

        return Session
    if name == "RunConfig":
        from workbench.config import RunConfig

        return RunConfig
    raise AttributeError(name)
