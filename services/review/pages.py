"""Every HTML page of the review app and who may see it: one list for the tests that walk all
pages (the language walk in tests/review/, the browser suite with axe-core).

Paths with ``{exchange_id}``, ``{escalated_id}`` or ``{pseudonym}`` need a real one filled in;
``pages_for(role)`` gives the paths a user with that role may open (``agency`` stands for any
``agency:<id>`` role). URLs here are stable: change them only together with the browser suite.
"""

from __future__ import annotations

from services.review.web import (DECISION_ROLES, ESCALATION_ROLES, LEDGER_ROLES, QUEUE_ROLES, STATS_ROLES,
                                 SUBJECT_ROLES, USERS_ROLES)

PUBLIC = ("/login",)

PAGES: dict[str, tuple[str, ...]] = {
    "/queue": QUEUE_ROLES,
    "/queue?escalated_first=1&sort=oldest": QUEUE_ROLES,
    "/decisions/{exchange_id}": DECISION_ROLES,
    "/escalations": ESCALATION_ROLES,
    "/escalations?status=all": ESCALATION_ROLES,
    "/escalations/{escalated_id}": ESCALATION_ROLES,
    "/subjects": SUBJECT_ROLES,
    "/subjects/{pseudonym}": SUBJECT_ROLES,
    "/stats": STATS_ROLES,
    "/ledger": LEDGER_ROLES,
    "/admin/users": USERS_ROLES,
}

#: error pages a browser walk should also check (HTML, in the page's language)
ERROR_PAGES = {"/decisions/does-not-exist": 404, "/queue?since=notadate": 422, "/subjects/zzz": 404,
               "/queue?page=100000000000000000000": 422, "/no-such-page": 404}

ROLES = ("legal_officer", "auditor", "admin", "agency")


def pages_for(role: str) -> list[str]:
    role = "agency" if role.startswith("agency:") else role
    return [path for path, roles in PAGES.items() if role in roles]


def fill(path: str, **ids: str) -> str:
    """The path with its ids filled in (``exchange_id``, ``escalated_id``, ``pseudonym``)."""
    return path.format(**ids) if "{" in path else path


__all__ = ["PAGES", "PUBLIC", "ERROR_PAGES", "ROLES", "pages_for", "fill"]
