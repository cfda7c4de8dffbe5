"""Commands: the runner (make run), ua-admin, the container's health check."""
