"""``python -m processing``: every streaming job in one Spark application (see processing.jobs)."""

import sys

from processing.jobs import main

sys.exit(main())
