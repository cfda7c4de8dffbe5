"""The API server (contract sections 1, 9, 10): lib/web/app.py, run by lib/web/server.py."""
