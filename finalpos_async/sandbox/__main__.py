"""`python -m finalpos_async.sandbox`: run the sandbox from a shell."""

import sys

from ._serve import main

sys.exit(main())
