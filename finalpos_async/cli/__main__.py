"""`python -m finalpos_async.cli` runs the `finalpos` command."""

from . import main

main()
