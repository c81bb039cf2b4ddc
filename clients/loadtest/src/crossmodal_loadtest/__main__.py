"""`python -m crossmodal_loadtest`: the same as the crossmodal-loadtest command."""

import sys

from crossmodal_loadtest.cli import main

sys.exit(main())
