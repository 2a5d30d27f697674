"""The words of the contract: refusal codes, flags, alert kinds and roles.

They are relied on from outside (API clients, dashboards, auditors): never rename one.
"""

# Refusal codes (``errors[].code`` of a rejected event).
MALFORMED = "malformed"
MISSING_FIELD = "missing_field"
UNKNOWN_ITEM = "unknown_item"
UNKNOWN_LOCATION = "unknown_location"
UNKNOWN_UNIT = "unknown_unit"
INVALID_QUANTITY = "invalid_quantity"
FUTURE_TIMESTAMP = "future_timestamp"
INVALID_GTIN = "invalid_gtin"
EVENT_ID_REUSED = "event_id_reused"
FORBIDDEN_TYPE = "forbidden_type"
EXPIRED_LOT = "expired_lot"
RECALLED_LOT = "recalled_lot"
STALE_TIMESTAMP = "stale_timestamp"  # a stock event older than REPLENISH_MAX_EVENT_AGE_DAYS

REFUSAL_CODES = (
    MALFORMED, MISSING_FIELD, UNKNOWN_ITEM, UNKNOWN_LOCATION, UNKNOWN_UNIT,
    INVALID_QUANTITY, FUTURE_TIMESTAMP, INVALID_GTIN, EVENT_ID_REUSED, FORBIDDEN_TYPE,
    EXPIRED_LOT, RECALLED_LOT, STALE_TIMESTAMP,
)

# Flags on an accepted event (``flags``) and on its stock point.
LOT_NOT_RECEIVED = "lot_not_received"
NEGATIVE_STOCK = "negative_stock"
LATE = "late"
OUT_OF_ORDER = "out_of_order"
EXPIRY_MISMATCH = "expiry_mismatch"
EXPIRED_LOT_USED = "expired_lot_used"
RECALLED_LOT_USED = "recalled_lot_used"

FLAGS = (
    LOT_NOT_RECEIVED, NEGATIVE_STOCK, LATE, OUT_OF_ORDER, EXPIRY_MISMATCH,
    EXPIRED_LOT_USED, RECALLED_LOT_USED,
)
BOOKKEEPING_FLAGS = frozenset({LOT_NOT_RECEIVED, NEGATIVE_STOCK, LATE, OUT_OF_ORDER, EXPIRY_MISMATCH})
CRITICAL_FLAGS = frozenset({EXPIRED_LOT_USED, RECALLED_LOT_USED})

# Outcome statuses.
ACCEPTED = "accepted"
DUPLICATE = "duplicate"
REJECTED = "rejected"
QUEUED = "queued"

# Alert kinds and severities.
ALERT_DATA_QUALITY = "data_quality"
ALERT_EXPIRED_LOT_SCANNED = "expired_lot_scanned"
ALERT_RECALLED_LOT_SCANNED = "recalled_lot_scanned"
ALERT_EXPIRED_LOT_USED = "expired_lot_used"
ALERT_RECALLED_LOT_USED = "recalled_lot_used"

ALERT_STOCKOUT = "stockout"
ALERT_STOCKOUT_RISK = "stockout_risk"
ALERT_DEMAND_SPIKE = "demand_spike"

# Lots, expiry and recalls (issue 7).
ALERT_EXPIRY_RISK = "expiry_risk"  # stock that will expire before it is used at the forecast rate
ALERT_EXPIRED_ON_SHELF = "expired_on_shelf"  # stock past its expiry still on the books
ALERT_HELD_LOT_USED = "held_lot_used"  # a use of a lot on hold (accepted: see README, "Lots")
ALERT_RECALL_TASK = "recall_task"  # a recall's units to find and confirm at one location

# Procurement (issue 8): notices about suppliers and orders, on the supplier's scorecard.
ALERT_SUPPLIER_REVIEW_NEEDED = "supplier_review_needed"  # its score fell past the threshold
ALERT_CONTRACT_BREACH = "contract_breach"  # a receipt broke the contract's price or lead time
ALERT_PURCHASE_ORDER = "purchase_order"  # a purchase order was issued (for ERP webhooks)
ALERT_SUPPLIER_CERTIFICATE = "supplier_certificate"  # a candidate's certificate expired or is missing
ALERT_ORDER_OVERDUE = "order_overdue"  # an open purchase order later than its supplier's lead time allows

# Causal order across Kafka topics (issue 14): events parked until the reference data sent
# before them (item, location, supplier) is stored.
ALERT_REFERENCE_WAIT = "reference_wait"

SEVERITY_INFO = "info"
SEVERITY_WARNING = "warning"
SEVERITY_CRITICAL = "critical"

ALERT_SEVERITY = {
    ALERT_DATA_QUALITY: SEVERITY_WARNING,
    ALERT_EXPIRED_LOT_SCANNED: SEVERITY_CRITICAL,
    ALERT_RECALLED_LOT_SCANNED: SEVERITY_CRITICAL,
    ALERT_EXPIRED_LOT_USED: SEVERITY_CRITICAL,
    ALERT_RECALLED_LOT_USED: SEVERITY_CRITICAL,
    ALERT_STOCKOUT: SEVERITY_CRITICAL,
    ALERT_STOCKOUT_RISK: SEVERITY_WARNING,
    ALERT_DEMAND_SPIKE: SEVERITY_WARNING,
    ALERT_EXPIRY_RISK: SEVERITY_WARNING,
    ALERT_EXPIRED_ON_SHELF: SEVERITY_CRITICAL,
    ALERT_HELD_LOT_USED: SEVERITY_CRITICAL,
    ALERT_RECALL_TASK: SEVERITY_CRITICAL,
    ALERT_SUPPLIER_REVIEW_NEEDED: SEVERITY_WARNING,
    ALERT_CONTRACT_BREACH: SEVERITY_WARNING,
    ALERT_PURCHASE_ORDER: SEVERITY_INFO,
    ALERT_SUPPLIER_CERTIFICATE: SEVERITY_WARNING,
    ALERT_ORDER_OVERDUE: SEVERITY_WARNING,
    ALERT_REFERENCE_WAIT: SEVERITY_WARNING,
}

# Roles.
SCANNER = "scanner"
BUYER = "buyer"
AUDITOR = "auditor"
ADMIN = "admin"
ROLES = (SCANNER, BUYER, AUDITOR, ADMIN)
