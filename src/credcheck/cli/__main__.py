"""`python -m credcheck.cli`: the same command as `credcheck` and `python -m credcheck`."""

import sys

from . import main

sys.exit(main())
