"""The SIP features, built on the pure decisions (lib/decisions) and the store (lib/store):
what the glue (kemi/) calls for each request, timer and event."""
