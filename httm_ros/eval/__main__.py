"""``python -m httm_ros.eval ...`` is ``httm-eval ...``."""

import sys

from .cli import main

sys.exit(main())
