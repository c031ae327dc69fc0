"""What each command that signs, seals or serves needs, and refusing to start without it.

Outside development (``XLEDGER_ENV=production`` is the default) a command refuses to
start when a secret it uses is missing, malformed or a public development value, or when
the authority key set it trusts is missing or holds a development key. The refusal is one
line per offending setting; the CLI prints them and exits 2 (``services.cli_common``).
"""

from __future__ import annotations

from typing import Iterable

from services.config import CHECKPOINT_KEY, KEYSET, MASTER_KEY, PSEUDONYM_SECRET, SESSION_SECRET, ConfigError, Settings

# The secrets (Settings fields) each command uses; README "Production" shows the same table.
NEEDS: dict[str, tuple[str, ...]] = {
    "gate run": (PSEUDONYM_SECRET, MASTER_KEY, KEYSET),
    "relay run": (MASTER_KEY, CHECKPOINT_KEY),
    "relay quarantine retry": (MASTER_KEY,),
    "review serve": (PSEUDONYM_SECRET, SESSION_SECRET, CHECKPOINT_KEY),
    "ledger integrate": (CHECKPOINT_KEY,),
    "ledger checkpoint-key": (CHECKPOINT_KEY,),
    "proof": (CHECKPOINT_KEY,),
    "verify": (CHECKPOINT_KEY,),  # only without --public-key: then the operator's own key is the anchor
    # Crypto-shredding promises nothing while the master key is public: a backup's wrapped keys open with it.
    "subject erase": (MASTER_KEY,),
    "subject report": (PSEUDONYM_SECRET,),
    "subject find": (PSEUDONYM_SECRET,),
    "audit": (MASTER_KEY, PSEUDONYM_SECRET, KEYSET),
    "keys rotate-master": (MASTER_KEY,),
}


def problems(settings: Settings, uses: Iterable[str], orgs: Iterable[str] = ()) -> list[str]:
    """One line per setting in ``uses`` this process cannot run with (``orgs``: the directory's authorities,
    whose derivable development keys a production key set must not hold)."""
    uses = tuple(uses)
    lines = settings.problems(*uses)
    if KEYSET in uses:
        from services.keyset import keyset_problems

        lines += keyset_problems(settings, orgs)[1]
    return lines


def require(settings: Settings, command: str, orgs: Iterable[str] | None = None) -> None:
    """Raises ConfigError (one line per problem) unless ``command`` may run with these settings."""
    uses = NEEDS[command]
    if orgs is None and KEYSET in uses:
        from policies.directory import Directory

        orgs = Directory.load().orgs
    lines = problems(settings, uses, orgs or ())
    if lines:
        raise ConfigError(lines)


def require_development(settings: Settings, what: str) -> None:
    """A development shortcut (a public key, a generated demo file) refuses to work outside development."""
    if not settings.is_development:
        raise ConfigError(f"{what} works only in development (XLEDGER_ENV=development); "
                          f"XLEDGER_ENV is {settings.mode}")


__all__ = ["NEEDS", "problems", "require", "require_development"]
