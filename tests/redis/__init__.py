"""Tests against a real Redis (the store, provisioning, the API in-process), no Kamailio."""
