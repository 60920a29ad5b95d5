"""``python -m builder`` runs the pybuild command line."""

from __future__ import annotations

import sys

from builder.cli import main

sys.exit(main())
