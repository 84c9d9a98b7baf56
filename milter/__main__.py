"""``python -m mailwarden``: the same as the ``mailwarden`` command."""

import sys

from mailwarden.cli import main

sys.exit(main())
