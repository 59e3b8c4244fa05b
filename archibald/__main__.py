"""``python -m archibald``: the command line."""

from ._cli import main

main()
