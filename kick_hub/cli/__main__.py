"""``python -m kick_hub.cli``: the ``kick`` command (``kick_hub.cli.main``)."""

import sys

from kick_hub.cli import main

sys.exit(main())
