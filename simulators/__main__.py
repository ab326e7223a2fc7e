"""`python -m simulators`: the wearable-sim command."""

import sys

from simulators.cli import main

sys.exit(main())
