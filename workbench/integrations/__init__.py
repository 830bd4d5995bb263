"""Bridges to other training engines (optional extras).

``workbench.integrations.trl``: TRL's GRPOTrainer with the workbench's strategies,
measurements, run store and commands (``pip install 'rlvr-workbench[trl]'``).
"""
