"""Read models in ClickHouse, fed from the event store's notification log.

Empty in the Foundation: the projection follower, DDL and named KPI queries arrive with
their own issue and read the store through ``eventsourcing``'s notification log.
"""
