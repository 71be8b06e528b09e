"""``python -m kipu.cli``."""

import sys

from kipu.cli import main

sys.exit(main())
