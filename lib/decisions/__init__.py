"""Pure decisions: plain functions of plain data, no I/O (no store, no HTTP, no Kamailio),
unit-tested without any process. routing.route_incoming says which device rings."""
