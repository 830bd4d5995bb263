"""The Gradio dashboard of the workbench (``workbench dashboard``).

Layered on the engine's run store and command API only: it reads what a run writes and
writes commands, so it watches and steers runs started anywhere (the CLI, a notebook,
another dashboard). Nothing here imports torch (``tests/ui/test_no_torch.py``).

- ``ui.views``, ``ui.drilldown``, ``ui.compare``: pure functions, store -> plotly figures
- ``ui.tables``: pure functions, store -> table rows (runs, events, commands)
- ``ui.timeline``: the strategy timeline every step-axis figure shades, and downsampling
- ``ui.style``: colours and the shared plotly layout
- ``ui.live``: the poller's change detection (``store.version``) and incremental caches
- ``ui.forms``: form validation and the ``workbench train`` command line of a new run
- ``ui.runner``: training subprocesses started from the dashboard
- ``ui.control``: what buttons and API endpoints do (commands, starts, status), no Gradio
- ``ui.app``: the Gradio layout (``build_app``), its API endpoints and ``serve``
"""
