"""Per-stock-point and per-supplier online estimators (river-style, one per file).

The Foundation leaves this package empty on purpose: the demand and lead-time models
arrive with their own issue and plug into ``streams.processor`` after an event is stored.
"""
