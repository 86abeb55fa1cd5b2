"""``python -m credcheck``: the same as the ``credcheck`` command."""

import sys

from .cli import main

sys.exit(main())
