"""``python -m negopt``: the same as the ``negopt`` command."""

import sys

from negopt.cli import main

sys.exit(main())
