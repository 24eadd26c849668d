"""``python -m httm_ros.eval ...`` is ``httm-eval ...``."""

import sys

from .eval_cli import main

sys.exit(main())
