"""The domain: the one event schema, master data, lots and stock points, the rules
that accept, flag or refuse an event, and the formulas. Pure: no I/O, no frameworks
beyond the ``eventsourcing`` aggregate base."""
