"""The legal officer's review web app (FastAPI, server-rendered Jinja2, plain CSS) and its JSON API."""
