"""When a lot counts as expired."""

from datetime import date, datetime
from zoneinfo import ZoneInfo


def is_expired(expiry: date, at: datetime, timezone: str) -> bool:
    """A lot is expired from the start of the day after its expiry date, in the site's time zone.

    Paris is on summer time (UTC+2) on 31 March 2026, so 1 April starts at 22:00 UTC:

    >>> from datetime import timezone as tz
    >>> is_expired(date(2026, 3, 31), datetime(2026, 3, 31, 21, 59, tzinfo=tz.utc), "Europe/Paris")
    False
    >>> is_expired(date(2026, 3, 31), datetime(2026, 3, 31, 22, 0, tzinfo=tz.utc), "Europe/Paris")
    True
    """
    # A time zone's offset from any other is under two days, so only an expiry within two days
    # of ``at``'s own date needs the site's calendar.
    days = expiry.toordinal() - at.toordinal()
    if days >= 2:
        return False
    if days < -2:
        return True
    return at.astimezone(ZoneInfo(timezone)).date() > expiry
