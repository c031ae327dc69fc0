"""`python -m services.cli` runs the xledger command line."""

from services.cli import main

main()
