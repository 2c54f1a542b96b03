"""``python -m spikec``: the same command line as the ``spikec`` script."""

from spikec.cli import main

main()
