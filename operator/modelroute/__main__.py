"""``python -m modelroute`` runs the operator."""

import sys

from modelroute.cli import main

sys.exit(main())
