"""Tests against real Kamailio, Redis and clients (SIPp, baresip, Chromium, Prometheus)."""
