"""The state store: Redis key names (keyspace), their encoding (codec), the clients
(clients, with Sentinel) and the SIP hot path's own connection with posted writes and
a client-side cache (wire)."""
