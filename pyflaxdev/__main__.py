"""``python -m pyflaxdev`` runs the ``flaxdev`` CLI."""

import sys

from pyflaxdev.cli import main

sys.exit(main())
