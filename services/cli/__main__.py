"""`python -m services.cli` runs the xledger command line."""

from services.cli import main

# Guarded: a worker process of `audit reevaluate` / `policy impact` started by spawn imports this
# module again, and must not run the command a second time.
if __name__ == "__main__":
    main()
