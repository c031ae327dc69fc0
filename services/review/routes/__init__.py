"""The review app's routers, one per area; ``services/review/app.py`` includes them in this order."""

from services.review.routes import admin, auth, docs, escalations, ledger, queue, reviews, stats, subjects

ROUTERS = [auth.router, queue.router, reviews.router, escalations.router, subjects.router, stats.router,
           ledger.router, admin.router, docs.router]

__all__ = ["ROUTERS"]
