#!/usr/bin/python3
"""Mock of the appointments CRM API that crm_fdw talks to.

Python 3.11 standard library only.  It plays the documented contract
(/work/shared/api/CONTRACT.md) and, through a control API under /_mock/,
every undocumented behaviour the extension must survive: other listing
orders, inclusive/strict "after" filters, clock skew, format variants,
rows changing between pages, rate limiting and transport faults.

See test/mock/README.md for the command line and the control API.
"""

import argparse
import io
import json
import math
import os
import random
import re
import signal
import socket
import ssl
import struct
import sys
import threading
import time
import traceback
import unicodedata
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

# --------------------------------------------------------------------------
# Contract constants
# --------------------------------------------------------------------------

API_PREFIX = "/api/crm"

# The exact fields of an appointment object, in the guide's order.
FIELDS = [
    "id", "full_name", "email", "phone", "location", "meeting_type",
    "preferred_language", "enquiry_type", "enquiry_type_display",
    "service_type", "specific_service", "enquiry_details",
    "appointment_date", "appointment_time", "appointment_datetime",
    "duration_minutes", "status", "status_display", "is_paid", "amount",
    "discount_amount", "final_amount", "promo_code", "assigned_admin",
    "payment", "admin_notes", "client_notes", "confirmed_at", "cancelled_at",
    "cancellation_reason", "created_at", "updated_at",
]
DT_FIELDS = {"appointment_datetime", "confirmed_at", "cancelled_at",
             "created_at", "updated_at"}
MONEY_FIELDS = {"amount", "discount_amount", "final_amount"}

# CSV export: scalar fields in contract order, then the flattened objects.
CSV_COLUMNS = [f for f in FIELDS if f not in ("assigned_admin", "payment")] + [
    "assigned_admin_id", "assigned_admin_name", "assigned_admin_email",
    "payment_id", "payment_status", "payment_amount", "payment_method",
    "payment_paid_at",
]

STATUSES = ["pending", "confirmed", "in_progress", "completed", "cancelled", "no_show"]
STATUS_DISPLAY = {"pending": "Pending", "confirmed": "Confirmed",
                  "in_progress": "In Progress", "completed": "Completed",
                  "cancelled": "Cancelled", "no_show": "No Show"}
LOCATIONS = ["melbourne", "adelaide"]
ENQUIRY_TYPES = ["tr", "tourist", "education", "pr_complex"]
ENQUIRY_DISPLAY = {"tr": "TR (TRand JRP)", "tourist": "Tourist Visa",
                   "education": "Education", "pr_complex": "PR Complex"}
ORDERS = ["id_asc", "id_desc", "updated_asc", "datetime_desc", "random"]
DT_STYLES = ["micro_z", "plain_z", "offset", "offset_hms", "offset_west_hms"]
FAULT_MODES = ["500", "503", "502html", "hang", "slow", "truncate",
               "invalid_json", "wrong_types", "huge", "reset", "429",
               "length_lie", "401", "422", "html200", "redirect"]
REDIRECT_STATUSES = [301, 302, 303, 307, 308]

US = 1_000_000                      # microseconds per second
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
DATA_START = datetime(2024, 1, 1, tzinfo=timezone.utc)
DATA_END = datetime(2025, 12, 31, 23, 59, 59, tzinfo=timezone.utc)


def us_of(dt):
    return (dt - EPOCH) // timedelta(microseconds=1)


def dt_of(us):
    return EPOCH + timedelta(microseconds=us)


DATA_START_US = us_of(DATA_START)
DATA_END_US = us_of(DATA_END)

# --------------------------------------------------------------------------
# Formatting of datetimes and money (internal: int microseconds / int cents)
# --------------------------------------------------------------------------

_dst_cache = {}


def _melbourne_dst_bounds(year):
    """UTC instants (us) where Melbourne DST ends (April) and starts (October).

    Both transitions fall on the first Sunday of the month, which is the
    Saturday 16:00 UTC before it.  Hand-written so the output does not depend
    on the host's tz database.
    """
    if year not in _dst_cache:
        bounds = []
        for month in (4, 10):
            d = date(year, month, 1)
            d += timedelta(days=(6 - d.weekday()) % 7)
            sunday = datetime(d.year, d.month, d.day, tzinfo=timezone.utc)
            bounds.append(us_of(sunday - timedelta(hours=8)))
        _dst_cache[year] = tuple(bounds)
    return _dst_cache[year]


def melbourne_offset_hours(us):
    end, start = _melbourne_dst_bounds(dt_of(us).year)
    return 11 if (us < end or us >= start) else 10


def fmt_dt(us, style="micro_z"):
    """Render a timestamp; every style denotes the same instant (lossless)."""
    if us is None:
        return None
    if style in ("offset", "offset_hms", "offset_west_hms"):
        # west: UTC-5 all year (Bogota, Panama); hms: the offset's seconds too
        off = -5 if style == "offset_west_hms" else melbourne_offset_hours(us)
        d = dt_of(us + off * 3600 * US)
        tail = "%s%02d:00" % ("-" if off < 0 else "+", abs(off))
        if style != "offset":
            tail += ":00"
    else:
        d = dt_of(us)
        tail = "Z"
    base = "%04d-%02d-%02dT%02d:%02d:%02d" % (d.year, d.month, d.day,
                                              d.hour, d.minute, d.second)
    if style == "micro_z":
        return "%s.%06d%s" % (base, d.microsecond, tail)
    # the others: fraction only when there is one, so no value is lost
    if d.microsecond:
        return "%s.%06d%s" % (base, d.microsecond, tail)
    return base + tail


def fmt_money(cents, as_number=False):
    if cents is None:
        return None
    if as_number:
        return cents / 100.0
    sign = "-" if cents < 0 else ""
    c = abs(cents)
    return "%s%d.%02d" % (sign, c // 100, c % 100)


def parse_money(v):
    """Money from a control request: number or decimal string -> cents."""
    if v is None:
        return None
    if isinstance(v, bool):
        raise ValueError("money must be a number or decimal string")
    try:
        d = Decimal(str(v))
    except InvalidOperation:
        raise ValueError("bad money value %r" % (v,))
    if not d.is_finite():
        raise ValueError("bad money value %r" % (v,))
    return int((d * 100).to_integral_value())


_DT_PARAM_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"\s*([Zz]|[+-]\d{2}(?::?\d{2})?)?$")
_DATE_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


def parse_datetime(s):
    """Parse a datetime query value to us; None when invalid.

    Accepts "2024-11-10", "2024-11-10T14:25:00Z", "2024-11-10 14:25:00",
    fractional seconds and offsets like +10:00.  No zone means UTC, the
    Laravel app timezone.  A "+" that arrived unencoded in a query string has
    become a space and is rejected, as PHP would.
    """
    m = _DT_PARAM_RE.match(s)
    if not m:
        return None
    y, mo, d, h, mi, sec, frac, zone = m.groups()
    try:
        frac_us = int((frac or "0")[:6].ljust(6, "0"))
        dt = datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0),
                      int(sec or 0), frac_us, tzinfo=timezone.utc)
    except ValueError:
        return None
    us = us_of(dt)
    if zone and zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        off_min = int(digits[:2]) * 60 + int(digits[2:4] or 0)
        if off_min > 18 * 60:
            return None
        us -= sign * off_min * 60 * US
    return us


def parse_date(s):
    """Strict Y-m-d -> same string (ISO dates compare correctly as text)."""
    m = _DATE_RE.match(s)
    if not m:
        return None
    try:
        date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None
    return s


# --------------------------------------------------------------------------
# Deterministic test data
# --------------------------------------------------------------------------

# (display name, email local part) -- the first ones are the brief's examples.
SPECIAL_NAMES = [
    ("José Álvarez", "Jose.Alvarez"),
    ("Zoë O'Brien", "Zoe.OBrien"),
    ("李雷", "Li.Lei"),
    ("Nguyễn Thị Ngọc", "Ngoc.Nguyen"),
    ("Ægir Þórsson", "Aegir.Thorsson"),
    ("D'Arcy O'Neill-Smith", "DArcy.ONeill"),
    ("王芳", "Wang.Fang"),
    ("Siobhán Ní Bhriain", "Siobhan.NiBhriain"),
    ("Ольга Иванова", "Olga.Ivanova"),
    ("محمد علي", "Mohammed.Ali"),
    ("Łukasz Wiśniewski", "Lukasz.Wisniewski"),
    ("Anaïs Lefèvre", "Anais.Lefevre"),
    ("田中 博", "Hiroshi.Tanaka"),
    ("Søren Kierkegaard", "Soren.Kierkegaard"),
]
FIRST_NAMES = ["Olivia", "Liam", "Priya", "Mohammed", "Chloé", "Björn", "Aroha",
               "Sofía", "Jean-Luc", "Kwame", "Renée", "Mei", "Arjun", "Fatima",
               "Noah", "Ava", "Rahul", "Grace", "Ngaio", "Mateus", "Anh", "Dvir",
               "Harpreet", "Isla", "Tomás", "Ayesha", "Ethan", "Mia", "Seán", "Yuki"]
LAST_NAMES = ["Smith", "Nguyen", "Patel", "O'Connor", "Müller", "Dubois",
              "Hernández", "Te Rangi", "Mensah", "Singh", "Kaur", "Brown",
              "Wilson", "Chen", "Kim", "Rossi", "D'Souza", "García", "Tran",
              "Williams", "Le", "Sharma", "Jones", "Ó Briain", "Van der Berg"]
EMAIL_DOMAINS = ["Example.com", "gmail.com", "Outlook.com", "yahoo.com.au",
                 "bigpond.com", "hotmail.com"]
LANGUAGES = ["English"] * 6 + ["Mandarin", "Hindi", "Punjabi", "Vietnamese",
                               "Spanish", "Nepali", "Arabic", "Português"]
SERVICES = {
    "tr": ("temporary-residency", ["Subclass 482 TSS Visa",
                                   "Subclass 485 Temporary Graduate Visa",
                                   "Subclass 407 Training Visa",
                                   "Bridging Visa B (travel)"]),
    "tourist": ("tourist-visa", ["Subclass 600 Visitor Visa",
                                 "Subclass 601 ETA", "Subclass 651 eVisitor"]),
    "education": ("education", ["Subclass 500 Student Visa",
                                "Course & provider selection",
                                "Subclass 590 Student Guardian"]),
    "pr_complex": ("permanent-residency", ["Subclass 189 Skilled Independent",
                                           "Subclass 190 Skilled Nominated",
                                           "Subclass 186 ENS",
                                           "Partner Visa (820/801)",
                                           "AAT/ART Appeal"]),
}
PRICES = {"tr": [15000, 15000, 19950], "tourist": [9900, 9900, 12000],
          "education": [0, 5000, 9950], "pr_complex": [25000, 25000, 35000]}
PROMOS = [("WELCOME10", 10), ("STUDENT20", 20), ("EOFY15", 15)]
ADMINS = [
    {"id": 1, "name": "Admin User", "email": "admin@bansalimmigration.com"},
    {"id": 2, "name": "Priya Sharma", "email": "priya.sharma@bansalimmigration.com"},
    {"id": 3, "name": "Liam O'Connor", "email": "liam.oconnor@bansalimmigration.com"},
    {"id": 4, "name": "Chloé Dubois", "email": "chloe.dubois@bansalimmigration.com"},
]
PAYMENT_METHODS = ["stripe", "stripe", "stripe", "paypal", "bank_transfer"]
# Text that breaks naive CSV/JSON/SQL handling.  None = SQL NULL.
DETAILS = [
    "Need help with TSS visa application...",
    'Client says "urgent" - visa expires next month, please call, not email',
    "Line one\nLine two\nLine three",
    "Windows line\r\nbreak inside",
    "Tab\tseparated\tvalues",
    "Looking for a PR pathway 🇦🇺 after graduation 🎓🙂",
    "Comma, separated, list, of, questions",
    "Backslash \\ and slash / and quote ' mixed",
    "Ünïcödé: 日本語テキスト, ελληνικά, עברית, हिन्दी",
    '{"looks": "like json", "n": 1}',
    "   leading and trailing spaces   ",
    "100% sure; cost < $500 & > $200? ½ price",
    "Semi;colon|pipe,comma\"quote'apostrophe",
    "",
    None, None, None,
]
ADMIN_NOTES = [
    "Client has all documents ready",
    'Asked for "Priya" specifically, prefers mornings',
    "Docs missing:\n- passport\n- payslips, last 3",
    "Called twice, no answer 📞",
    "VIP\trepeat client",
    None, None, None, None,
]
CLIENT_NOTES = [
    "Please call me after 5pm",
    "I'll bring my spouse, is that OK?",
    "Parking info?\nThanks!",
    'My agent said "just book it"',
    "🙏 urgent",
    None, None, None, None, None,
]
CANCEL_REASONS = ["Client requested reschedule", "No longer required",
                  'Booked elsewhere ("cheaper")', "Illness,\nwill rebook", None]


def _ascii_fold(s):
    folded = s.replace("Æ", "Ae").replace("æ", "ae").replace("Þ", "Th")
    folded = folded.replace("þ", "th").replace("ð", "d").replace("Ø", "O")
    folded = folded.replace("ø", "o").replace("ß", "ss").replace("Ł", "L")
    folded = folded.replace("ł", "l")
    folded = unicodedata.normalize("NFKD", folded)
    return "".join(c for c in folded if c.isascii() and c.isalnum())


class Generator:
    """Builds rows from one seeded RNG so the data depends only on the seed."""

    def __init__(self, seed, rows):
        self.rng = random.Random("crm-mock-data:%s" % seed)
        self.n_clients = max(len(SPECIAL_NAMES), rows // 3)
        self.clients = [self._client(i) for i in range(self.n_clients)]
        self.next_payment_id = 1

    def _client(self, i):
        rng = self.rng
        if i < len(SPECIAL_NAMES):
            name, local = SPECIAL_NAMES[i]
        else:
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            name = "%s %s" % (first, last)
            local = "%s.%s%d" % (_ascii_fold(first).capitalize(),
                                 _ascii_fold(last).capitalize(), i)
        domain = "Example.com" if i == 0 else rng.choice(EMAIL_DOMAINS)
        if rng.random() < 0.1:
            phone = "04%02d %03d %03d" % (rng.randrange(100), rng.randrange(1000),
                                          rng.randrange(1000))
        else:
            phone = "+61 4%02d %03d %03d" % (rng.randrange(100), rng.randrange(1000),
                                             rng.randrange(1000))
        return {"name": name, "email": "%s@%s" % (local, domain),
                "phone": phone, "lang": rng.choice(LANGUAGES)}

    def _pick_client(self):
        # Skewed towards the first clients so the same person books many
        # times (with differently-cased emails).
        rng = self.rng
        if rng.random() < 0.3:
            return self.clients[min(int(rng.expovariate(0.3)), self.n_clients - 1)]
        return rng.choice(self.clients)

    def _email_variant(self, email):
        r = self.rng.random()
        if r < 0.45:
            return email.lower()
        if r < 0.55:
            return email.upper()
        return email

    def payment(self, cents, paid_at):
        pid = self.next_payment_id
        self.next_payment_id += 1
        return {"id": pid, "status": "completed", "amount": cents,
                "payment_method": self.rng.choice(PAYMENT_METHODS),
                "paid_at": paid_at}

    def row(self, rid, appt_date=None, created=None):
        """One internally consistent appointment.

        Historic rows (created=None) live in 2024..2025; inserted rows get
        created=updated=the given mock-now and a date after it.
        """
        rng = self.rng
        c = self._pick_client()
        et = rng.choice(ENQUIRY_TYPES)
        stype, specifics = SERVICES[et]
        if appt_date is None:
            appt_date = date(2024, 1, 1) + timedelta(days=rng.randrange(731))
        slot = rng.randrange(17)                      # 09:00 .. 17:00
        hh, mm = 9 + slot // 2, 30 * (slot % 2)
        appt_us = us_of(datetime(appt_date.year, appt_date.month, appt_date.day,
                                 hh, mm, tzinfo=timezone.utc))
        duration = rng.choice([30, 30, 45, 60])
        amount = rng.choice(PRICES[et])
        promo, discount = None, 0
        if amount and rng.random() < 0.12:
            promo, pct = rng.choice(PROMOS)
            discount = amount * pct // 100
        final = amount - discount

        if created is None:
            status = rng.choices(STATUSES, weights=[20, 30, 5, 25, 12, 8])[0]
            lead = rng.randrange(3600, 60 * 86400)
            created_us = max(DATA_START_US + rng.randrange(3600), appt_us - lead * US)
            created_us -= created_us % US
            new_row = False
        else:
            status = rng.choices(["pending", "confirmed"], weights=[80, 20])[0]
            created_us = created
            new_row = True

        def after(t, lo, hi):
            # a whole-second instant after t, within the data period
            v = t + rng.randrange(lo, hi) * US
            return v if new_row else min(v, DATA_END_US)

        events = [created_us]
        confirmed_at = cancelled_at = reason = None
        if status in ("confirmed", "in_progress", "completed", "no_show"):
            confirmed_at = created_us if new_row else after(created_us, 300, 2 * 86400)
            events.append(confirmed_at)
        if status == "cancelled":
            if rng.random() < 0.4:
                confirmed_at = after(created_us, 300, 86400)
                events.append(confirmed_at)
            cancelled_at = after(max(events), 600, 10 * 86400)
            events.append(cancelled_at)
            reason = rng.choice(CANCEL_REASONS)
        paid_chance = {"pending": 0.1, "confirmed": 0.7, "in_progress": 0.85,
                       "completed": 0.95, "cancelled": 0.2, "no_show": 0.5}[status]
        is_paid = rng.random() < paid_chance
        payment = None
        if is_paid:
            paid_at = created_us if new_row else after(created_us, 60, 1800)
            payment = self.payment(final, paid_at)
            events.append(paid_at)
        if new_row:
            updated_us = created_us
        elif status in ("completed", "no_show", "in_progress"):
            updated_us = min(max(max(events), appt_us + duration * 60 * US)
                             + rng.randrange(0, 2 * 86400) * US, DATA_END_US)
        elif rng.random() < 0.4:
            updated_us = created_us                    # never touched again
        else:
            updated_us = after(max(events), 0, 3 * 86400)
        updated_us = max(updated_us, max(events))

        sparse = rng.random() < 0.02                   # a row full of NULLs
        return {
            "id": rid,
            "full_name": c["name"],
            "email": None if rng.random() < 0.005 else self._email_variant(c["email"]),
            "phone": None if (sparse or rng.random() < 0.03) else c["phone"],
            "location": rng.choices(LOCATIONS, weights=[70, 30])[0],
            "meeting_type": rng.choice(["in-person", "video", "phone"]),
            "preferred_language": None if sparse else c["lang"],
            "enquiry_type": et,
            "enquiry_type_display": ENQUIRY_DISPLAY[et],
            "service_type": None if sparse else stype,
            "specific_service": None if (sparse or rng.random() < 0.05) else rng.choice(specifics),
            "enquiry_details": None if sparse else (
                rng.choice(DETAILS) if rng.random() < 0.97
                else "Long story. " * rng.randrange(100, 400)),
            "appointment_date": appt_date.isoformat(),
            "appointment_time": "%02d:%02d" % (hh, mm),
            "appointment_datetime": appt_us,
            "duration_minutes": duration,
            "status": status,
            "status_display": STATUS_DISPLAY[status],
            "is_paid": is_paid,
            "amount": amount,
            "discount_amount": discount,
            "final_amount": final,
            "promo_code": promo,
            "assigned_admin": None if (sparse or rng.random() < 0.3) else dict(rng.choice(ADMINS)),
            "payment": payment,
            "admin_notes": None if sparse else rng.choice(ADMIN_NOTES),
            "client_notes": None if sparse else rng.choice(CLIENT_NOTES),
            "confirmed_at": confirmed_at,
            "cancelled_at": cancelled_at,
            "cancellation_reason": reason,
            "created_at": created_us,
            "updated_at": updated_us,
        }

    def apply_batches(self, rows):
        """Give groups of rows one shared updated_at (bulk updates).

        The big batch has more than 100 rows once there are ~400 rows, so it
        crosses a page boundary of 100 in any order.
        """
        rng = self.rng
        plan = [(datetime(2025, 7, 1, 3, 0, tzinfo=timezone.utc),
                 max(2, min(250, len(rows) // 4)))]
        for _ in range(5):
            t = DATA_START + timedelta(seconds=rng.randrange(60 * 86400, 700 * 86400))
            plan.append((t.replace(microsecond=0), rng.randrange(3, 13)))
        for when, size in plan:
            t = us_of(when)
            cand = [r for r in rows if max(r["created_at"], r["confirmed_at"] or 0,
                                           r["cancelled_at"] or 0,
                                           (r["payment"] or {}).get("paid_at") or 0) <= t
                    and (r["status"] not in ("completed", "no_show", "in_progress")
                         or r["appointment_datetime"] <= t)]
            for r in rng.sample(cand, min(size, len(cand))):
                r["updated_at"] = t


# --------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------

def render(row, money_num=False, style="micro_z", extra=False, wrong=False):
    """Internal row -> JSON-ready dict in the selected wire format."""
    d = {}
    for f in FIELDS:
        v = row[f]
        if f in DT_FIELDS:
            v = fmt_dt(v, style)
        elif f in MONEY_FIELDS:
            v = fmt_money(v, money_num)
        elif f == "assigned_admin" and v is not None:
            v = dict(v)
            if extra:
                v["role"] = "consultant"
                v["avatar_url"] = "https://cdn.example.com/a/%d.png" % v["id"]
        elif f == "payment" and v is not None:
            v = {"id": v["id"], "status": v["status"],
                 "amount": fmt_money(v["amount"], money_num),
                 "payment_method": v["payment_method"],
                 "paid_at": fmt_dt(v["paid_at"], style)}
            if extra:
                v["currency"] = "AUD"
                v["transaction_id"] = "pi_%08d" % v["id"]
        d[f] = v
        if extra and f == "id":
            # an unknown field early in the object, not only at the end
            d["internal_ref"] = "BIM-%06d" % row["id"]
    if extra:
        d["source_channel"] = "website"
        d["tags"] = ["repeat", "web"]
        d["metadata"] = {"utm_source": "google", "score": 0.87,
                         "nested": {"a": [1, 2, {"b": None}]}}
        d["deleted_at"] = None
    if wrong:
        d["id"] = "abc"
        d["duration_minutes"] = "lots"
        d["is_paid"] = "yes"
        d["appointment_date"] = "not-a-date"
    return d


def dumps(obj, escape=False):
    """Compact JSON; escape=True mimics PHP json_encode (\\uXXXX and \\/)."""
    s = json.dumps(obj, ensure_ascii=escape, separators=(",", ":"))
    return s.replace("/", "\\/") if escape else s


def csv_field(v):
    """RFC 4180 field: NULL is empty and unquoted, "" is quoted."""
    if v is None:
        return ""
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if not isinstance(v, str):
        v = json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    if v == "" or any(ch in v for ch in ',"\r\n'):
        return '"' + v.replace('"', '""') + '"'
    return v


def csv_columns(extra):
    if not extra:
        return CSV_COLUMNS
    return ["id", "internal_ref"] + CSV_COLUMNS[1:] + ["source_channel"]


def csv_values(d, extra):
    admin = d["assigned_admin"] or {}
    pay = d["payment"] or {}
    flat = dict(d)
    flat.update({"assigned_admin_id": admin.get("id"),
                 "assigned_admin_name": admin.get("name"),
                 "assigned_admin_email": admin.get("email"),
                 "payment_id": pay.get("id"), "payment_status": pay.get("status"),
                 "payment_amount": pay.get("amount"),
                 "payment_method": pay.get("payment_method"),
                 "payment_paid_at": pay.get("paid_at")})
    return [flat.get(c) for c in csv_columns(extra)]


# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------

class ConfigError(ValueError):
    pass


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def default_config(rate_limit):
    return {
        "order": "id_asc",
        "after_strict": True,
        "clock_offset_seconds": 0,
        "money_as_number": False,
        "datetime_format": "micro_z",
        "extra_fields": False,
        "omit_pagination": False,
        "envelope_notice": None,
        "unlisted_ids": [],
        "repeated_ids": [],
        "json_escape_unicode": False,
        "timestamp_precision": "micro",
        "mutate_between_pages": None,
        "rate_limit_per_minute": rate_limit,
        "rate_limit_window_seconds": 60,
        "rate_limit_headers": True,
        "date_header": True,
        "retry_after_seconds": None,
        "hang_seconds": 30,
        "slow_seconds": 5,
        "huge_bytes": 5_000_000,
        "fault": None,
    }


def _check_choice(key, v, choices):
    if v not in choices:
        raise ConfigError("%s must be one of %s" % (key, ", ".join(choices)))


def _check_nonneg_num(key, v):
    if not _is_num(v) or v < 0:
        raise ConfigError("%s must be a number >= 0" % key)


def _check_nonneg_int(key, v):
    if not _is_int(v) or v < 0:
        raise ConfigError("%s must be an integer >= 0" % key)


def validate_config_patch(patch):
    """Check a POST /_mock/config body; return the normalised patch."""
    if not isinstance(patch, dict):
        raise ConfigError("config body must be a JSON object")
    out = {}
    for key, v in patch.items():
        if key in ("fault_state", "now"):          # read-only, ignored
            continue
        if key in ("after_strict", "money_as_number", "extra_fields", "omit_pagination",
                   "json_escape_unicode", "rate_limit_headers", "date_header"):
            if not isinstance(v, bool):
                raise ConfigError("%s must be true or false" % key)
        elif key == "order":
            _check_choice(key, v, ORDERS)
        elif key == "datetime_format":
            _check_choice(key, v, DT_STYLES)
        elif key == "timestamp_precision":
            _check_choice(key, v, ["micro", "second"])
        elif key == "clock_offset_seconds":
            if not _is_num(v):
                raise ConfigError("clock_offset_seconds must be a number")
        elif key in ("hang_seconds", "slow_seconds"):
            _check_nonneg_num(key, v)
        elif key == "rate_limit_window_seconds":
            if not _is_num(v) or v <= 0:
                raise ConfigError("rate_limit_window_seconds must be a number > 0")
        elif key in ("huge_bytes", "rate_limit_per_minute"):
            _check_nonneg_int(key, v)
        elif key == "retry_after_seconds":
            if v is not None:
                _check_nonneg_int(key, v)
        elif key == "envelope_notice":
            if v is not None and not isinstance(v, str):
                raise ConfigError("envelope_notice must be a string or null")
        elif key in ("unlisted_ids", "repeated_ids"):
            if not isinstance(v, list) or not all(isinstance(i, int) and not isinstance(i, bool)
                                                  for i in v):
                raise ConfigError("%s must be a list of integers" % key)
        elif key == "mutate_between_pages":
            v = _validate_mbp(v)
        elif key == "fault":
            v = _validate_fault(v)
        else:
            raise ConfigError("unknown config key %r" % key)
        out[key] = v
    return out


def _validate_mbp(v):
    if v is None:
        return None
    if not isinstance(v, dict):
        raise ConfigError("mutate_between_pages must be an object or null")
    res = {"updates": 0, "inserts": 0, "same_updated_at": False}
    for k, x in v.items():
        if k in ("updates", "inserts"):
            _check_nonneg_int("mutate_between_pages." + k, x)
        elif k == "same_updated_at":
            if not isinstance(x, bool):
                raise ConfigError("mutate_between_pages.same_updated_at must be a boolean")
        else:
            raise ConfigError("unknown mutate_between_pages key %r" % k)
        res[k] = x
    return res


def _validate_fault(v):
    if v is None:
        return None
    if not isinstance(v, dict):
        raise ConfigError("fault must be an object or null")
    if "mode" not in v:
        raise ConfigError("fault.mode is required")
    res = {"mode": None, "count": 1, "path": None, "after": 0}
    for k, x in v.items():
        if k == "mode":
            x = str(x) if _is_int(x) else x
            _check_choice("fault.mode", x, FAULT_MODES)
        elif k == "count":
            if not _is_int(x) or x < -1:
                raise ConfigError("fault.count must be an integer >= -1")
        elif k == "path":
            if x is not None and not isinstance(x, str):
                raise ConfigError("fault.path must be a string")
        elif k in ("after", "huge_bytes"):
            _check_nonneg_int("fault." + k, x)
        elif k in ("hang_seconds", "slow_seconds"):
            _check_nonneg_num("fault." + k, x)
        elif k == "retry_after_seconds":
            if x is not None:
                _check_nonneg_int("fault." + k, x)
        elif k == "location":
            if not isinstance(x, str) or not x or any(c in x for c in "\r\n"):
                raise ConfigError("fault.location must be a non-empty string on one line")
        elif k == "redirect_status":
            if x not in REDIRECT_STATUSES:
                raise ConfigError("fault.redirect_status must be one of %s"
                                  % ", ".join(map(str, REDIRECT_STATUSES)))
        else:
            raise ConfigError("unknown fault key %r" % k)
        res[k] = x
    if res["mode"] == "redirect" and "location" not in res:
        raise ConfigError("fault.location is required for mode redirect")
    return res


# --------------------------------------------------------------------------
# The store: rows, config, caches, mutations.  One lock guards all of it.
# --------------------------------------------------------------------------

class ValidationError(Exception):
    """422 with Laravel's {"message","errors"} body."""

    def __init__(self, errors):
        super().__init__("validation")
        self.errors = errors


def _label(field):
    return field.replace("_", " ")


def _int_param(q, name, default, lo, hi, errors):
    raw = q.get(name)
    if raw is None:
        return default
    if not re.fullmatch(r"[+-]?\d+", raw.strip()):
        errors[name] = ["The %s field must be an integer." % _label(name)]
        return default
    n = int(raw)
    if n < lo:
        errors[name] = ["The %s field must be at least %d." % (_label(name), lo)]
    elif hi is not None and n > hi:
        errors[name] = ["The %s field must not be greater than %d." % (_label(name), hi)]
    return n


class Store:
    def __init__(self, seed, rows, rate_limit):
        self.lock = threading.RLock()
        self.default_seed, self.default_rows = seed, rows
        self.rate_limit_default = rate_limit
        self.reset()

    # ---- lifecycle -------------------------------------------------------

    def reset(self, seed=None, rows=None):
        with self.lock:
            self.seed = self.default_seed if seed is None else seed
            n = self.default_rows if rows is None else rows
            self.gen = Generator(self.seed, n)
            rows_list = [self.gen.row(i) for i in range(1, n + 1)]
            self.gen.apply_batches(rows_list)
            self.rows = {r["id"]: r for r in rows_list}
            self.by_id = rows_list                 # kept sorted by id
            self.max_id = n
            # separate streams so mutations do not disturb data generation
            self.mut_rng = random.Random("crm-mock-mutations:%s" % self.seed)
            self.order_rng = random.Random("crm-mock-order:%s" % self.seed)
            self.cache = {}                       # id -> {variant: text}
            self.order_cache = {}                 # order -> list
            self.config = default_config(self.rate_limit_default)
            self.fault_state = {"seen": 0, "fired": 0}
            self.windows = {}                     # token -> [start, count]
            self.last_ts = 0

    # ---- clock -----------------------------------------------------------

    def now_us(self):
        return int((time.time() + self.config["clock_offset_seconds"]) * US)

    def next_ts(self):
        """Mock-now for a write; strictly increasing within a burst so that
        separate updates get distinct updated_at unless asked to share."""
        ts = self.now_us()
        if self.config["timestamp_precision"] == "second":
            return ts - ts % US
        if self.last_ts - US < ts <= self.last_ts:
            ts = self.last_ts + 1
        self.last_ts = ts
        return ts

    # ---- caches ----------------------------------------------------------

    def variant(self, wrong=False):
        c = self.config
        return (c["money_as_number"], c["datetime_format"], c["extra_fields"],
                c["json_escape_unicode"], wrong)

    def row_json(self, row, variant):
        money, style, extra, esc, wrong = variant
        if wrong:
            return dumps(render(row, money, style, extra, True), esc)
        per_row = self.cache.setdefault(row["id"], {})
        key = ("json",) + variant
        text = per_row.get(key)
        if text is None:
            text = per_row[key] = dumps(render(row, money, style, extra), esc)
        return text

    def row_csv(self, row, variant):
        money, style, extra, esc, wrong = variant
        per_row = self.cache.setdefault(row["id"], {})
        key = ("csv",) + variant
        text = per_row.get(key)
        if text is None:
            vals = csv_values(render(row, money, style, extra, wrong), extra)
            text = ",".join(csv_field(v) for v in vals) + "\r\n"
            if not wrong:
                per_row[key] = text
        return text

    def _changed(self, rid):
        self.cache.pop(rid, None)
        self.order_cache.clear()

    def ordered(self, order):
        """All rows in the listing order (cached until the next change)."""
        if order == "id_asc":
            return self.by_id
        if order == "random":
            rows = list(self.by_id)
            self.order_rng.shuffle(rows)
            return rows
        rows = self.order_cache.get(order)
        if rows is None:
            if order == "id_desc":
                rows = self.by_id[::-1]
            elif order == "updated_asc":
                rows = sorted(self.by_id, key=lambda r: (r["updated_at"], r["id"]))
            else:  # datetime_desc
                rows = sorted(self.by_id, key=lambda r: (r["appointment_datetime"] or 0,
                                                         r["id"]), reverse=True)
            self.order_cache[order] = rows
        return rows

    # ---- queries ---------------------------------------------------------

    def parse_filters(self, q, paging):
        """Validate the /appointments query; raise ValidationError (422)."""
        errors, f = {}, {}
        for name in ("start_date", "end_date"):
            if q.get(name) is not None:
                f[name] = parse_date(q[name])
                if f[name] is None:
                    errors[name] = ["The %s field must match the format Y-m-d." % _label(name)]
        for name, allowed in (("status", STATUSES), ("location", LOCATIONS),
                              ("enquiry_type", ENQUIRY_TYPES)):
            if q.get(name) is not None:
                if q[name] in allowed:
                    f[name] = q[name]
                else:
                    errors[name] = ["The selected %s is invalid." % _label(name)]
        for name in ("created_after", "updated_after"):
            if q.get(name) is not None:
                f[name] = parse_datetime(q[name])
                if f[name] is None:
                    errors[name] = ["The %s field must be a valid date." % _label(name)]
        if paging:
            f["per_page"] = _int_param(q, "per_page", 50, 1, 100, errors)
            f["page"] = _int_param(q, "page", 1, 1, None, errors)
        if errors:
            raise ValidationError(errors)
        return f

    def filtered(self, f):
        rows = self.ordered(self.config["order"])
        # narrow step by step: cheap even for 100k rows
        if "start_date" in f:
            v = f["start_date"]
            rows = [r for r in rows if r["appointment_date"] is not None
                    and r["appointment_date"] >= v]
        if "end_date" in f:
            v = f["end_date"]
            rows = [r for r in rows if r["appointment_date"] is not None
                    and r["appointment_date"] <= v]
        for name in ("status", "location", "enquiry_type"):
            if name in f:
                v = f[name]
                rows = [r for r in rows if r[name] == v]
        strict = self.config["after_strict"]
        for name, col in (("created_after", "created_at"), ("updated_after", "updated_at")):
            if name in f:
                t = f[name]
                if strict:
                    rows = [r for r in rows if r[col] is not None and r[col] > t]
                else:
                    rows = [r for r in rows if r[col] is not None and r[col] >= t]
        return rows

    # ---- mutations -------------------------------------------------------

    def _set_status(self, row, status, ts):
        """Change status and keep the dependent fields consistent."""
        row["status"] = status
        row["status_display"] = STATUS_DISPLAY.get(status, status)
        if status == "pending":
            row["confirmed_at"] = None
        elif status in ("confirmed", "in_progress", "completed", "no_show"):
            if row["confirmed_at"] is None:
                row["confirmed_at"] = ts
        if status == "cancelled":
            row["cancelled_at"] = ts
            row["cancellation_reason"] = self.mut_rng.choice(CANCEL_REASONS)
        else:
            row["cancelled_at"] = row["cancellation_reason"] = None
        if status == "completed" and not row["is_paid"]:
            self._set_paid(row, True, ts)

    def _set_paid(self, row, paid, ts):
        row["is_paid"] = paid
        if paid and row["payment"] is None:
            row["payment"] = self.gen.payment(row["final_amount"], ts)
        elif not paid:
            row["payment"] = None

    def _random_update(self, row, ts):
        nxt = {"pending": ["confirmed", "cancelled"],
               "confirmed": ["in_progress", "completed", "cancelled", "no_show"],
               "in_progress": ["completed"], "completed": ["completed"],
               "cancelled": ["pending"], "no_show": ["pending"]}
        new = self.mut_rng.choice(nxt.get(row["status"], ["pending"]))
        if new == row["status"]:
            row["admin_notes"] = "Follow-up call %d" % self.mut_rng.randrange(1, 1000)
        self._set_status(row, new, ts)
        row["updated_at"] = ts
        self._changed(row["id"])

    def _pick_ids(self, n):
        n = min(n, len(self.by_id))
        return sorted(r["id"] for r in self.mut_rng.sample(self.by_id, n))

    def update_random(self, n, same_ts=None):
        ids = self._pick_ids(n)
        for rid in ids:
            self._random_update(self.rows[rid], same_ts or self.next_ts())
        return ids

    def insert(self, n, same_ts=None):
        ids = []
        # inserted rows come from the mutation stream, not the data stream
        saved, self.gen.rng = self.gen.rng, self.mut_rng
        try:
            for _ in range(n):
                ts = same_ts or self.next_ts()
                when = dt_of(ts).date() + timedelta(days=self.mut_rng.randrange(1, 60))
                self.max_id += 1
                row = self.gen.row(self.max_id, appt_date=when, created=ts)
                self.rows[row["id"]] = row
                self.by_id.append(row)
                self._changed(row["id"])
                ids.append(row["id"])
        finally:
            self.gen.rng = saved
        return ids

    def delete(self, ids):
        gone = set()
        for rid in ids:
            if self.rows.pop(rid, None) is not None:
                gone.add(rid)
                self._changed(rid)
        if gone:
            self.by_id = [r for r in self.by_id if r["id"] not in gone]
        return sorted(gone)

    def update(self, ids, fields):
        done, missing = [], []
        for rid in ids:
            row = self.rows.get(rid)
            if row is None:
                missing.append(rid)
                continue
            self._apply_fields(row, fields, self.next_ts())
            self._changed(rid)
            done.append(rid)
        return done, missing

    def _apply_fields(self, row, fields, ts):
        if "status" in fields:
            self._set_status(row, fields["status"], ts)
        if "is_paid" in fields and "payment" not in fields:
            self._set_paid(row, bool(fields["is_paid"]), ts)
        if "enquiry_type" in fields and "enquiry_type_display" not in fields:
            row["enquiry_type_display"] = ENQUIRY_DISPLAY.get(fields["enquiry_type"])
        for k, v in fields.items():
            row[k] = v
        if ("appointment_date" in fields or "appointment_time" in fields) \
                and "appointment_datetime" not in fields:
            row["appointment_datetime"] = parse_datetime(
                "%s %s" % (row["appointment_date"], row["appointment_time"]))
        if "updated_at" not in fields:
            row["updated_at"] = ts

    # ---- rate limiting ---------------------------------------------------

    def rate_check(self, token):
        """Laravel-style fixed window.  Returns (allowed, headers)."""
        limit = self.config["rate_limit_per_minute"]
        if not limit:
            return True, []
        window = self.config["rate_limit_window_seconds"]
        now = time.monotonic()
        w = self.windows.get(token)
        if w is None or now - w[0] >= window:
            w = self.windows[token] = [now, 0]
        if w[1] >= limit:
            reset_in = max(1, math.ceil(w[0] + window - now))
            ra = self.config["retry_after_seconds"]
            return False, [("Retry-After", str(reset_in if ra is None else ra)),
                           ("X-RateLimit-Limit", str(limit)),
                           ("X-RateLimit-Remaining", "0"),
                           ("X-RateLimit-Reset", str(int(time.time() + reset_in)))]
        w[1] += 1
        if not self.config["rate_limit_headers"]:
            return True, []
        return True, [("X-RateLimit-Limit", str(limit)),
                      ("X-RateLimit-Remaining", str(limit - w[1]))]

    def take_fault(self, path):
        """The fault this request gets (a dict), or None."""
        f = self.config["fault"]
        if not f or (f.get("path") and f["path"] not in path):
            return None
        st = self.fault_state
        st["seen"] += 1
        if st["seen"] <= f["after"]:
            return None
        if f["count"] >= 0 and st["fired"] >= f["count"]:
            return None
        st["fired"] += 1
        return f

    def public_config(self):
        c = dict(self.config)
        fs = dict(self.fault_state)
        f = c["fault"]
        fs["active"] = bool(f) and (f["count"] < 0 or fs["fired"] < f["count"])
        c["fault_state"] = fs
        c["now"] = fmt_dt(self.now_us())
        return c


# --------------------------------------------------------------------------
# Request log
# --------------------------------------------------------------------------

class RequestLog:
    def __init__(self, log_file=None):
        self.lock = threading.Lock()
        self.entries = []
        self.seq = 0
        self.file = open(log_file, "a", encoding="utf-8", buffering=1) if log_file else None

    def start(self, method, path, raw_query, auth, conn=None, client_port=None,
              accept=None):
        with self.lock:
            self.seq += 1
            e = {"seq": self.seq, "method": method, "path": path,
                 "query": parse_qs(raw_query, keep_blank_values=True),
                 "raw_query": raw_query, "status": None, "fault": None,
                 "auth": auth, "ts": time.time(), "conn": conn,
                 "client_port": client_port, "accept": accept}
            self.entries.append(e)
            return e

    def done(self, entry):
        if self.file:
            with self.lock:
                self.file.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def note(self, text):
        if self.file:
            with self.lock:
                self.file.write(text.rstrip("\n") + "\n")

    def clear(self):
        with self.lock:
            self.entries = []
            self.seq = 0

    def dump(self):
        with self.lock:
            return json.dumps(self.entries, ensure_ascii=False)


# --------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------

HTML_503 = ("<!DOCTYPE html>\n<html><head><title>Service Unavailable</title></head>"
            "<body><h1>503 Service Unavailable</h1><p>Be right back.</p></body></html>\n")
HTML_502 = ("<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
            "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
            "</body>\r\n</html>\r\n")
HTML_200 = ("<!DOCTYPE html>\n<html><head><title>Login</title></head><body>"
            "<form action=\"/login\" method=\"post\"><input name=\"email\"></form>"
            "</body></html>\n")
JSON_TYPE = "application/json"
CSV_TYPE = "text/csv; charset=UTF-8"
HTML_TYPE = "text/html; charset=UTF-8"
MAX_BODY = 16 * 1024 * 1024

_ID_RE = re.compile(r"^\d{1,18}$")


class Reply:
    """A computed response, before any fault mangles its delivery."""

    def __init__(self, status, body, ctype=JSON_TYPE, headers=None):
        self.status = status
        self.body = body.encode("utf-8") if isinstance(body, str) else body
        self.ctype = ctype
        self.headers = list(headers or [])


def json_reply(status, obj, escape=False):
    return Reply(status, dumps(obj, escape))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nginx"
    timeout = 300               # idle keep-alive connections are dropped after this

    # ---- plumbing --------------------------------------------------------

    def version_string(self):
        return self.server_version

    def send_header(self, keyword, value):
        # date_header false: no Date, as behind a proxy that strips it
        if keyword == "Date" and not self.server.app.store.config["date_header"]:
            return
        super().send_header(keyword, value)

    def date_time_string(self, timestamp=None):
        # The Date header speaks the mock's clock, offset included, as a
        # real API server's Date speaks its own (skewed) clock.
        if timestamp is None:
            timestamp = self.server.app.store.now_us() / US
        return super().date_time_string(timestamp)

    def setup(self):
        super().setup()
        # one number per TCP connection, for checking keep-alive reuse
        self.conn_id = self.server.app.next_conn_id()
        # headers and body go out in one write, but be safe against Nagle
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, fmt, *args):
        if self.server.app.verbose:
            sys.stderr.write("mock_api: %s - %s\n" % (self.address_string(), fmt % args))

    def do_GET(self):
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def _dispatch(self):
        app = self.server.app
        self._sent = False
        if self.request_version == "HTTP/0.9":
            self.close_connection = True     # no status line possible; just hang up
            return
        try:
            parts = urlsplit(self.path)
            path = unquote(parts.path)
            body = self._read_body()
            if body is None:
                return
            if path == "/_mock" or path.startswith("/_mock/"):
                app.control(self, path, body)
            else:
                app.api(self, path, parts.query)
        except (ConnectionError, TimeoutError, socket.timeout):
            self.close_connection = True
        except Exception:
            app.log.note(traceback.format_exc())
            if app.verbose:
                traceback.print_exc()
            if not self._sent:
                try:
                    self.emit(json_reply(500, {"message": "Server Error"}))
                except OSError:
                    pass
            self.close_connection = True

    def _read_body(self):
        """Read the request body so keep-alive stays in sync; None = answered."""
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            out = bytearray()
            while True:
                line = self.rfile.readline(65537)
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    self.close_connection = True
                    self.emit(json_reply(400, {"message": "Bad chunked body"}))
                    return None
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline(65537)
                if len(out) > MAX_BODY:
                    self.close_connection = True
                    self.emit(json_reply(413, {"message": "Payload Too Large"}))
                    return None
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            n = -1
        if n < 0 or n > MAX_BODY:
            self.close_connection = True
            self.emit(json_reply(400 if n < 0 else 413, {"message": "Bad Content-Length"}))
            return None
        return self.rfile.read(n) if n else b""

    def emit(self, reply, length=None, body_part=None):
        """Send status, headers and body in one write.  length/body_part let
        the truncate/length_lie faults lie about the body."""
        self._sent = True
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.ctype)
        body = reply.body if body_part is None else body_part
        self.send_header("Content-Length", str(len(reply.body) if length is None else length))
        self.send_header("Cache-Control", "no-cache, private")
        for k, v in reply.headers:
            self.send_header(k, v)
        self._headers_buffer.append(b"\r\n")
        head = b"".join(self._headers_buffer)
        self._headers_buffer = []
        self.wfile.write(head + body)

    def emit_slow(self, reply, seconds, stop):
        """Headers now, then the body in small pieces spread over `seconds`."""
        self.emit(reply, body_part=b"")
        body = reply.body
        n = max(1, min(len(body), int(seconds * 10) or 1))
        step = math.ceil(len(body) / n) if body else 0
        for i in range(n):
            if stop.wait(seconds / n):
                break
            self.wfile.write(body[i * step:(i + 1) * step])

    def abort(self):
        """Close with SO_LINGER 0: the peer sees a TCP RST, no response."""
        self._sent = True
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            # drop the file objects' references so close() really closes now
            self.rfile.close()
            self.wfile.close()
            self.connection.close()
        except OSError:
            pass
        # the base class flushes/closes wfile afterwards; give it a harmless one
        self.wfile = io.BytesIO()


class App:
    def __init__(self, args):
        self.tokens = args.token
        self.verbose = args.verbose
        self.store = Store(args.seed, args.rows, args.rate_limit)
        self.log = RequestLog(args.log_file)
        self.stop = threading.Event()
        self._conn_lock = threading.Lock()
        self._conn_seq = 0

    def next_conn_id(self):
        with self._conn_lock:
            self._conn_seq += 1
            return self._conn_seq

    # ---- control API -----------------------------------------------------

    def control(self, h, path, body):
        method = h.command
        path = path.rstrip("/") or "/"
        route = path[len("/_mock/"):] if path.startswith("/_mock/") else ""
        allowed = {"health": ["GET"], "reset": ["POST"], "config": ["GET", "POST"],
                   "mutate": ["POST"], "data": ["GET"], "log": ["GET", "DELETE"],
                   "shutdown": ["POST"], "clock": ["GET"]}
        if route not in allowed:
            return h.emit(json_reply(404, {"error": "unknown control endpoint %s" % path}))
        if method not in allowed[route]:
            return h.emit(json_reply(405, {"error": "use %s" % " or ".join(allowed[route])},
                                     ))
        payload = {}
        if method == "POST" and body.strip():
            try:
                payload = json.loads(body)
            except (ValueError, UnicodeDecodeError) as e:
                return h.emit(json_reply(400, {"error": "bad JSON: %s" % e}))
            if not isinstance(payload, dict):
                return h.emit(json_reply(400, {"error": "body must be a JSON object"}))
        st = self.store
        try:
            if route == "health":
                reply = json_reply(200, {"ok": True})
            elif route == "clock":
                with st.lock:
                    reply = json_reply(200, {"now": fmt_dt(st.now_us()),
                                             "offset_seconds": st.config["clock_offset_seconds"]})
            elif route == "reset":
                for k in payload:
                    if k not in ("rows", "seed"):
                        raise ConfigError("unknown reset key %r" % k)
                rows, seed = payload.get("rows"), payload.get("seed")
                if rows is not None and (not _is_int(rows) or not 0 <= rows <= 5_000_000):
                    raise ConfigError("rows must be an integer 0..5000000")
                if seed is not None and not isinstance(seed, (int, str)):
                    raise ConfigError("seed must be an integer or string")
                st.reset(seed=seed, rows=rows)
                self.log.clear()
                with st.lock:
                    reply = json_reply(200, {"ok": True, "rows": len(st.rows), "seed": st.seed})
            elif route == "config":
                with st.lock:
                    if method == "POST":
                        patch = validate_config_patch(payload)
                        if "fault" in patch:
                            st.fault_state = {"seen": 0, "fired": 0}
                        if "rate_limit_per_minute" in patch or \
                                "rate_limit_window_seconds" in patch:
                            st.windows = {}
                        st.config.update(patch)
                    reply = json_reply(200, st.public_config())
            elif route == "mutate":
                reply = json_reply(200, self.mutate(payload))
            elif route == "data":
                with st.lock:
                    v = (False, "micro_z", False, False, False)
                    text = "[" + ",".join(st.row_json(r, v) for r in st.by_id) + "]"
                reply = Reply(200, text)
            elif route == "log":
                if method == "DELETE":
                    self.log.clear()
                    reply = json_reply(200, {"ok": True})
                else:
                    reply = Reply(200, self.log.dump())
            else:  # shutdown
                h.close_connection = True
                h.emit(json_reply(200, {"ok": True}))
                self.stop.set()
                return
        except ConfigError as e:
            reply = json_reply(400, {"error": str(e)})
        h.emit(reply)

    def mutate(self, p):
        known = {"update", "fields", "update_random", "insert", "delete", "batch_update"}
        for k in p:
            if k not in known:
                raise ConfigError("unknown mutate key %r" % k)

        def ids_of(key):
            v = p.get(key, [])
            if not isinstance(v, list) or not all(_is_int(x) for x in v):
                raise ConfigError("%s must be a list of integer ids" % key)
            return v

        def count_of(key):
            v = p.get(key, 0)
            _check_nonneg_int(key, v)
            return v

        upd_ids, del_ids = ids_of("update"), ids_of("delete")
        n_rand, n_ins, n_batch = count_of("update_random"), count_of("insert"), count_of("batch_update")
        fields = self._parse_fields(p.get("fields") or {})
        st = self.store
        res = {"updated": [], "inserted": [], "deleted": [], "missing": []}
        with st.lock:
            if del_ids:
                res["deleted"] = st.delete(del_ids)
                res["missing"] += sorted(set(del_ids) - set(res["deleted"]))
            if upd_ids:
                done, missing = st.update(upd_ids, fields)
                res["updated"] += done
                res["missing"] += missing
            if n_rand:
                res["updated"] += st.update_random(n_rand)
            if n_batch:
                ts = st.next_ts()
                res["updated"] += st.update_random(n_batch, same_ts=ts)
                res["batch_updated_at"] = fmt_dt(ts)
            if n_ins:
                res["inserted"] = st.insert(n_ins)
            res["ids"] = sorted(set(res["updated"]) | set(res["inserted"]) | set(res["deleted"]))
            res["now"] = fmt_dt(st.now_us())
        return res

    @staticmethod
    def _parse_fields(fields):
        """Override values for POST /_mock/mutate, in canonical wire format."""
        if not isinstance(fields, dict):
            raise ConfigError("fields must be an object")
        out = {}
        for k, v in fields.items():
            if k not in FIELDS or k == "id":
                raise ConfigError("unknown or read-only field %r" % k)
            if k in DT_FIELDS and v is not None:
                us = parse_datetime(v) if isinstance(v, str) else None
                if us is None:
                    raise ConfigError("%s: bad datetime %r" % (k, v))
                v = us
            elif k in MONEY_FIELDS:
                try:
                    v = parse_money(v)
                except ValueError as e:
                    raise ConfigError("%s: %s" % (k, e))
            elif k == "status" and v not in STATUSES:
                raise ConfigError("status must be one of %s" % ", ".join(STATUSES))
            elif k == "assigned_admin" and v is not None:
                if not isinstance(v, dict) or not _is_int(v.get("id")):
                    raise ConfigError("assigned_admin must be null or {id,name,email}")
                v = {"id": v["id"], "name": v.get("name"), "email": v.get("email")}
            elif k == "payment" and v is not None:
                if not isinstance(v, dict) or not _is_int(v.get("id")):
                    raise ConfigError("payment must be null or {id,status,amount,payment_method,paid_at}")
                try:
                    paid = v.get("paid_at")
                    paid_us = None if paid is None else parse_datetime(paid)
                    if paid is not None and paid_us is None:
                        raise ValueError("bad paid_at")
                    v = {"id": v["id"], "status": v.get("status"),
                         "amount": parse_money(v.get("amount")),
                         "payment_method": v.get("payment_method"), "paid_at": paid_us}
                except (ValueError, TypeError) as e:
                    raise ConfigError("payment: %s" % e)
            elif isinstance(v, (dict, list)):
                raise ConfigError("%s must be a scalar" % k)
            out[k] = v
        return out

    # ---- the CRM API -----------------------------------------------------

    def _auth(self, h):
        header = h.headers.get("Authorization")
        if header is None:
            return "missing", None
        m = re.match(r"(?i)bearer\s+(.*)$", header.strip())
        if m and m.group(1).strip() in self.tokens:
            return "ok", m.group(1).strip()
        return "wrong", None

    @staticmethod
    def _route(path):
        if path.startswith(API_PREFIX + "/"):
            rest = path[len(API_PREFIX):].rstrip("/")
            if rest == "/appointments":
                return "list", None
            if rest.startswith("/appointments/"):
                tail = rest[len("/appointments/"):]
                if tail in ("recent", "export", "stats"):
                    return tail, None
                if "/" not in tail:
                    return "one", tail
        return None, None

    def api(self, h, path, raw_query):
        st = self.store
        auth, token = self._auth(h)
        entry = self.log.start(h.command, path, raw_query, auth, conn=h.conn_id,
                               client_port=h.client_address[1],
                               accept=h.headers.get("Accept"))
        try:
            self._api(h, path, raw_query, auth, token, entry)
        finally:
            self.log.done(entry)

    def _api(self, h, path, raw_query, auth, token, entry):
        st = self.store
        kind, arg = self._route(path)

        def send(reply):
            entry["status"] = reply.status
            h.emit(reply)

        if kind is None:
            return send(json_reply(404, {"message": "The route %s could not be found."
                                         % path.lstrip("/")}))
        if h.command != "GET":
            return send(json_reply(405, {"message": "The %s method is not supported for route "
                                         "%s. Supported methods: GET, HEAD."
                                         % (h.command, path.lstrip("/"))}))
        if auth != "ok":
            return send(json_reply(401, {"message": "Unauthenticated."}))
        with st.lock:
            allowed, rl_headers = st.rate_check(token)
            if not allowed:
                r = json_reply(429, {"message": "Too Many Attempts."})
                r.headers = rl_headers
                return send(r)
            fault = st.take_fault(path)
            cfg = dict(st.config)
        mode = fault["mode"] if fault else None
        entry["fault"] = mode

        def knob(name):
            return fault[name] if fault.get(name) is not None else cfg[name]

        # Faults that replace the answer without computing it.
        if mode == "hang":
            entry["status"] = "hang"
            self.stop.wait(knob("hang_seconds"))
            h.close_connection = True
            return
        if mode == "reset":
            entry["status"] = "reset"
            return h.abort()
        canned = {
            "500": (500, '{"message":"Server Error"}', JSON_TYPE),
            "503": (503, HTML_503, HTML_TYPE),
            "502html": (502, HTML_502, HTML_TYPE),
            "401": (401, '{"message":"Unauthenticated."}', JSON_TYPE),
            "422": (422, '{"message":"The given data was invalid.","errors":'
                         '{"per_page":["The per page field must be an integer."]}}', JSON_TYPE),
            "html200": (200, HTML_200, HTML_TYPE),
            "invalid_json": (200, '{"success":true,"data":[{"id":1,"full_name":"Jos\u00e9 '
                                  '\u00c1lvarez","email":,}]', JSON_TYPE),
        }
        if mode in canned:
            status, body, ctype = canned[mode]
            return send(Reply(status, body, ctype, rl_headers))
        if mode == "429":
            ra = knob("retry_after_seconds")
            r = json_reply(429, {"message": "Too Many Attempts."})
            r.headers = [("Retry-After", str(1 if ra is None else ra)),
                         ("X-RateLimit-Limit", str(cfg["rate_limit_per_minute"] or 60)),
                         ("X-RateLimit-Remaining", "0")]
            return send(r)
        if mode == "redirect":
            target = fault["location"].replace("{request}", h.path)
            r = json_reply(fault.get("redirect_status") or 302,
                           {"message": "Redirecting to %s" % target})
            r.headers = [("Location", target)] + rl_headers
            return send(r)
        if mode == "length_lie":
            entry["status"] = 200
            h.close_connection = True
            h.emit(Reply(200, b"", JSON_TYPE, rl_headers),
                   length=1_000_000_000, body_part=b'{"success":true,"data":[')
            return

        # The real answer (possibly with wrong types), then delivery faults.
        q = {k: v[-1] for k, v in parse_qs(raw_query, keep_blank_values=True).items()
             if v and v[-1] != ""}   # PHP: last value wins; "" counts as absent
        try:
            with st.lock:
                reply = self._answer(kind, arg, q, wrong=(mode == "wrong_types"),
                                     huge=knob("huge_bytes") if mode == "huge" else None)
        except ValidationError as e:
            first = next(iter(e.errors))
            msg = "The %s field is invalid." % _label(first)
            if len(e.errors) > 1:
                more = len(e.errors) - 1
                msg += " (and %d more error%s)" % (more, "s" if more > 1 else "")
            reply = json_reply(422, {"message": msg, "errors": e.errors},
                               cfg["json_escape_unicode"])
        reply.headers += rl_headers
        entry["status"] = reply.status
        if mode == "slow":
            return h.emit_slow(reply, knob("slow_seconds"), self.stop)
        if mode == "truncate":
            h.close_connection = True
            return h.emit(reply, body_part=reply.body[:len(reply.body) // 2])
        h.emit(reply)

    def _answer(self, kind, arg, q, wrong=False, huge=None):
        """Compute one API response (store lock held)."""
        st = self.store
        cfg = st.config
        esc = cfg["json_escape_unicode"]
        extra = cfg["extra_fields"]
        v = st.variant(wrong)
        env_extra = ""
        if extra:
            env_extra = ',"message":"OK","meta":{"api_version":"1.1","generated_at":%s}' % \
                json.dumps(fmt_dt(st.now_us(), cfg["datetime_format"]))
        if cfg["envelope_notice"] is not None:
            env_extra += ',"notice":%s' % json.dumps(cfg["envelope_notice"])

        if kind == "one":
            row = st.rows.get(int(arg)) if _ID_RE.match(arg) else None
            if row is None:
                return json_reply(404, {"success": False, "message": "Appointment not found."})
            body = '{"success":true,"data":%s%s}' % (st.row_json(row, v), env_extra)
        elif kind == "list":
            f = st.parse_filters(q, paging=True)
            rows = st.filtered(f)
            per, page = f["per_page"], f["page"]
            total = len(rows)
            off = (page - 1) * per
            items = rows[off:off + per] if off < total else []
            if cfg["unlisted_ids"]:
                items = [r for r in items if r["id"] not in cfg["unlisted_ids"]]
            if cfg["repeated_ids"] and off < total:
                items += [r for r in rows[max(0, off - per):off] if r["id"] in cfg["repeated_ids"]]
            pag = {"total": total, "per_page": per, "current_page": page,
                   "last_page": max(1, math.ceil(total / per)),
                   "from": off + 1 if items else None,
                   "to": off + len(items) if items else None}
            if extra:
                pag["path"] = "http://127.0.0.1/api/crm/appointments"
                pag["has_more"] = page < pag["last_page"]
            if cfg["omit_pagination"]:
                body = '{"success":true,"data":[%s]%s}' % (
                    ",".join(st.row_json(r, v) for r in items), env_extra)
            else:
                body = '{"success":true,"data":[%s],"pagination":%s%s}' % (
                    ",".join(st.row_json(r, v) for r in items), dumps(pag, esc), env_extra)
            self._between_pages()
        elif kind == "recent":
            errors = {}
            minutes = _int_param(q, "minutes", 30, 1, 1440, errors)
            if errors:
                raise ValidationError(errors)
            cutoff = st.now_us() - minutes * 60 * US
            rows = [r for r in st.by_id
                    if (r["created_at"] or 0) >= cutoff or (r["updated_at"] or 0) >= cutoff]
            rows.sort(key=lambda r: (r["updated_at"] or 0, r["id"]), reverse=True)
            body = '{"success":true,"count":%d,"data":[%s]%s}' % (
                len(rows), ",".join(st.row_json(r, v) for r in rows), env_extra)
        elif kind == "export":
            f = st.parse_filters(q, paging=False)
            rows = st.filtered(f)
            cols = csv_columns(extra)
            lines = [",".join(cols)]
            if huge is not None:
                lines[0] += ",padding"
            text = lines[0] + "\r\n"
            parts = [text]
            for i, r in enumerate(rows):
                line = st.row_csv(r, v)
                if huge is not None:
                    pad = "x" * max(0, huge - len(text)) if i == 0 else ""
                    line = line[:-2] + "," + pad + "\r\n"
                parts.append(line)
            stamp = dt_of(st.now_us()).strftime("%Y-%m-%d_%H%M%S")
            return Reply(200, "".join(parts), CSV_TYPE, [
                ("Content-Disposition", 'attachment; filename="appointments_%s.csv"' % stamp)])
        else:  # stats
            body = self._stats(q, wrong, esc, extra)
        if huge is not None:
            # valid JSON of about `huge` bytes: the real answer plus padding
            pad = max(0, huge - len(body.encode("utf-8")) - 14)
            body = body[:-1] + ',"padding":"' + "x" * pad + '"}'
        return Reply(200, body)

    def _between_pages(self):
        """mutate_between_pages: shift rows after a page has been computed."""
        st = self.store
        mbp = st.config["mutate_between_pages"]
        if not mbp or not (mbp["updates"] or mbp["inserts"]):
            return
        ts = st.next_ts() if mbp["same_updated_at"] else None
        st.update_random(mbp["updates"], same_ts=ts)
        st.insert(mbp["inserts"], same_ts=ts)

    def _stats(self, q, wrong, esc, extra):
        st = self.store
        errors, f = {}, {}
        for name in ("start_date", "end_date"):
            if q.get(name) is not None:
                f[name] = parse_date(q[name])
                if f[name] is None:
                    errors[name] = ["The %s field must match the format Y-m-d." % _label(name)]
        if errors:
            raise ValidationError(errors)
        today = dt_of(st.now_us()).date()
        first = today.replace(day=1)
        last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
        start = f.get("start_date") or first.isoformat()
        end = f.get("end_date") or last.isoformat()
        rows = [r for r in st.by_id if r["appointment_date"] is not None
                and start <= r["appointment_date"] <= end]
        count = lambda key, val: sum(1 for r in rows if r[key] == val)
        revenue = sum(r["final_amount"] or 0 for r in rows if r["is_paid"] is True)
        stats = {
            "total_appointments": "lots" if wrong else len(rows),
            "pending": count("status", "pending"),
            "confirmed": count("status", "confirmed"),
            "completed": count("status", "completed"),
            "cancelled": count("status", "cancelled"),
            "paid_appointments": count("is_paid", True),
            "total_revenue": fmt_money(revenue, st.config["money_as_number"]),
            "by_enquiry_type": {e: count("enquiry_type", e) for e in ENQUIRY_TYPES},
            "by_location": {loc: count("location", loc) for loc in LOCATIONS},
        }
        style = st.config["datetime_format"]
        period = {
            "start_date": fmt_dt(parse_datetime(start + "T00:00:00Z"), style),
            "end_date": fmt_dt(parse_datetime(end + "T23:59:59Z"), style),
        }
        obj = {"success": True, "period": period, "stats": stats}
        if extra:
            stats["in_progress"] = count("status", "in_progress")
            obj["meta"] = {"api_version": "1.1", "cached": False}
        return dumps(obj, esc)


class Server(ThreadingHTTPServer):
    daemon_threads = True          # a hung handler never blocks exit
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        # client hang-ups are routine here; keep them off stderr
        self.app.log.note(traceback.format_exc())
        if self.app.verbose:
            traceback.print_exc()


def write_port_file(path, port):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as fh:
        fh.write("%d\n" % port)
    os.replace(tmp, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Mock appointments CRM API for crm_fdw tests")
    ap.add_argument("--port", type=int, default=0, help="0 = pick a free port")
    ap.add_argument("--port-file", help="write the port here (atomically) once listening")
    ap.add_argument("--token", action="append", required=True,
                    help="accepted bearer token (repeatable)")
    ap.add_argument("--rows", type=int, default=500)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--rate-limit", type=int, default=0,
                    help="requests per minute per token (0 = off)")
    ap.add_argument("--log-file", help="append one JSON line per API request here")
    ap.add_argument("--verbose", action="store_true", help="per-request lines on stderr")
    ap.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM)")
    ap.add_argument("--tls-key", help="the certificate's private key (PEM)")
    args = ap.parse_args(argv)
    if args.rows < 0 or args.rate_limit < 0:
        ap.error("--rows and --rate-limit must be >= 0")

    app = App(args)
    server = Server(("127.0.0.1", args.port), Handler)
    server.app = app
    if args.tls_cert:
        # HTTPS for the TLS tests: a client that rejects the certificate
        # fails the handshake in accept(), which socketserver shrugs off.
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    port = server.server_address[1]
    if args.port_file:
        write_port_file(args.port_file, port)
    else:
        print(port, flush=True)

    def on_signal(signum, frame):
        app.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                         daemon=True)
    t.start()
    while not app.stop.wait(0.5):
        pass
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
