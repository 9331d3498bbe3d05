"""A tenant's business hours: when a person from the team is expected to answer.

Stored as weekly opening hours in the tenant's time zone, e.g.
`{"mon": ["09:00-13:00", "14:00-18:00"], "sat": ["10:00-14:00"]}`. A day left out is closed;
no hours at all means a person may answer at any time. A range ends on the day it starts
("24:00" is the end of the day): one past midnight is written as two ranges.
"""

import re
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_RANGES_PER_DAY = 6
_RANGE = re.compile(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})")
_DAY_MINUTES = 24 * 60


class BusinessHoursError(ValueError):
    """Opening hours or a time zone that cannot be used; the message says what to fix."""


def _minutes(hours: str, minutes: str, *, end: bool) -> int:
    value = int(hours) * 60 + int(minutes)
    if int(minutes) > 59 or value > _DAY_MINUTES or (value == _DAY_MINUTES and not end):
        raise BusinessHoursError(f"{hours}:{minutes} is not a time of day.")
    return value


def _range_parse(text: object) -> tuple[int, int]:
    cleaned = text.strip() if isinstance(text, str) else ""
    match = _RANGE.fullmatch(cleaned)
    if match is None:
        raise BusinessHoursError(f'Write each range as "09:00-17:00", not {text!r}.')
    start = _minutes(match[1], match[2], end=False)
    end = _minutes(match[3], match[4], end=True)
    if end <= start:
        raise BusinessHoursError(
            f"{cleaned} ends before it starts: split a range past midnight in two "
            '(e.g. "22:00-24:00" and the next day "00:00-02:00").'
        )
    return start, end


def _format(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def business_hours_normalize(value: object) -> dict[str, list[str]]:
    """The opening hours in their stored form ("09:00-17:00", days in week order), or
    BusinessHoursError naming the first problem."""
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        raise BusinessHoursError('Opening hours look like {"mon": ["09:00-17:00"], ...}.')
    unknown = sorted(str(day) for day in value if day not in WEEKDAYS)
    if unknown:
        raise BusinessHoursError(f"Unknown day {unknown[0]!r}: use {', '.join(WEEKDAYS)}.")
    hours: dict[str, list[str]] = {}
    for day in WEEKDAYS:
        ranges = value.get(day)
        if ranges is None:
            continue
        if not isinstance(ranges, list) or len(ranges) > MAX_RANGES_PER_DAY:
            raise BusinessHoursError(
                f'{day}: a list of at most {MAX_RANGES_PER_DAY} ranges such as ["09:00-17:00"].'
            )
        parsed = sorted(_range_parse(text) for text in ranges)
        hours[day] = [f"{_format(start)}-{_format(end)}" for start, end in parsed]
    return hours


def timezone_get(name: str) -> ZoneInfo:
    """The time zone called `name` ("Europe/Madrid"), or BusinessHoursError."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise BusinessHoursError(
            f"Unknown time zone {name!r}: use a name such as Europe/Madrid."
        ) from None


def within_business_hours(hours: dict[str, list[str]], timezone_name: str, at: datetime) -> bool:
    """Whether `at` (an aware datetime) falls inside the opening hours. No hours: always."""
    if not hours:
        return True
    try:
        local = at.astimezone(timezone_get(timezone_name))
    except BusinessHoursError:
        local = at.astimezone(ZoneInfo("UTC"))
    minute = local.hour * 60 + local.minute
    for text in hours.get(WEEKDAYS[local.weekday()], []):
        try:
            start, end = _range_parse(text)
        except BusinessHoursError:
            continue
        if start <= minute < end:
            return True
    return False
