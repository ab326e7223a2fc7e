"""`python -m gateway`: the wearable-gateway command."""

import sys

from gateway.cli import main

sys.exit(main())
