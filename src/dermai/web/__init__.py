"""The local demo web app (FastAPI + a static page). Not a diagnostic tool."""
