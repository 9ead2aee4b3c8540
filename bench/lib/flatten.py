"""Write the mock API's rows as CSV for COPY into crm.appointments.

    flatten.py DATA_URL SERVER_NAME OUT.csv

Reads GET /_mock/data (every row, canonical JSON) and writes one CSV line per
row with the columns of COLUMNS below, mapped exactly as crm._store_rows maps
an API row (payment and assigned_admin flattened).  NULL is an unquoted empty
field and every string is quoted, so an empty string stays an empty string.
Prints the column list for the COPY statement.
"""

import json
import sys
import urllib.request

COLUMNS = [
    "server_name", "external_id", "client_name", "client_email", "client_phone",
    "appointment_datetime", "appointment_date", "appointment_time", "duration_minutes",
    "location", "meeting_type", "preferred_language", "enquiry_type", "enquiry_type_display",
    "service_type", "specific_service", "enquiry_details", "status", "status_display",
    "confirmed_at", "cancelled_at", "cancellation_reason", "is_paid", "amount",
    "discount_amount", "final_amount", "promo_code", "payment_id", "payment_status",
    "payment_method", "paid_at", "assigned_admin_id", "assigned_admin_name",
    "assigned_admin_email", "admin_notes", "client_notes", "source_created_at",
    "source_updated_at",
]

# API field of each column that is copied as it is
SAME = {
    "client_name": "full_name", "client_email": "email", "client_phone": "phone",
    "source_created_at": "created_at", "source_updated_at": "updated_at",
}


def field(v):
    """One CSV field: NULL unquoted and empty, anything else quoted (so an
    empty string stays one; csv.QUOTE_NONNUMERIC would quote None too)."""
    if v is None:
        return ""
    if isinstance(v, bool):
        v = "t" if v else "f"
    return '"' + str(v).replace('"', '""') + '"'


def flat(row, server):
    payment = row.get("payment") or {}
    admin = row.get("assigned_admin") or {}
    out = []
    for col in COLUMNS:
        if col == "server_name":
            v = server
        elif col == "external_id":
            v = row["id"]
        elif col.startswith("payment_") or col == "paid_at":
            v = payment.get({"payment_id": "id", "payment_status": "status",
                             "payment_method": "payment_method", "paid_at": "paid_at"}[col])
        elif col.startswith("assigned_admin_"):
            v = admin.get(col[len("assigned_admin_"):])
        else:
            v = row.get(SAME.get(col, col))
        out.append(field(v))
    return ",".join(out) + "\n"


def main():
    url, server, path = sys.argv[1:4]
    with urllib.request.urlopen(url) as r:
        rows = json.load(r)
    with open(path, "w", newline="", encoding="utf-8") as f:
        for row in rows:
            f.write(flat(row, server))
    print(", ".join(COLUMNS))


if __name__ == "__main__":
    main()
