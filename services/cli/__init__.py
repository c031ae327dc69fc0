"""xledger: the command line of exchange-ledger.

Every option also reads an XLEDGER_* environment variable. Bad input exits
non-zero with a one-line reason on stderr. This module only assembles the
command groups; each module of this package owns its own commands.
"""

from __future__ import annotations

import sys

from services.shutdown import install_for

# First, before the heavy imports below: a service stopped while it starts exits 0.
install_for(sys.argv)

import typer  # noqa: E402

app = typer.Typer(
    help="exchange-ledger: lawful, provable data exchange between Danish crime-prevention authorities.\n\n"
         "Only `gate run`, `relay run`, `ledger init` and `demo` create a ledger where there is none; every "
         "other command refuses a missing ledger (exit 2). Exit codes: 0 done, 1 a check failed, 2 bad input "
         "or no ledger, 3 could not check or could not start (e.g. the broker or ledger database did not "
         "answer within XLEDGER_CONNECT_TIMEOUT seconds).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
subject_app = typer.Typer(help="One citizen's data: access reports and erasure.", no_args_is_help=True)
app.add_typer(subject_app, name="subject")

from services.cli.policy import app as policy_app  # noqa: E402  (the policy group owns check/explain)

app.add_typer(policy_app, name="policy", help="Check, explain and assess disclosure policy.")

# Command modules register themselves on the shared groups; each owns its own commands.
from services.cli import (  # noqa: E402
    agency, audit, demo, directory, escalation, keys, ledger, review, schemas, services, topics, witness,
)
from services.cli import vectors  # noqa: E402  (mounted under schemas)

for _module in (demo, services, keys, agency, ledger, audit, review, witness, directory):
    _module.register(app=app, subject_app=subject_app, policy_app=policy_app)
schemas.app.add_typer(vectors.app, name="vectors")
app.add_typer(schemas.app, name="schemas")
app.add_typer(topics.app, name="topics")
app.add_typer(escalation.app, name="escalation")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
