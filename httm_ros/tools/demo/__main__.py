"""``python -m httm_ros.tools.demo``: the same as ``httm-demo``."""

import sys

from .run import main

sys.exit(main())
