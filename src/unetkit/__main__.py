"""``python -m unetkit`` runs the command line (also under ``torchrun -m unetkit``)."""

import sys

from unetkit.cli import main

sys.exit(main())
