"""``python -m workbench`` (and ``accelerate launch -m workbench train --backend trl ...``)."""

import sys

from workbench.cli import main

sys.exit(main())
