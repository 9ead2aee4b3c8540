#!/usr/bin/python3
"""Self-test of the mock CRM API (stdlib unittest).

Run:  /usr/bin/python3 test/mock/test_mock.py
Starts mock_api.py as a subprocess on a free port and checks the contract
behaviour, every switch and every fault mode.
"""

import csv
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
from datetime import datetime, timezone
from decimal import Decimal
from urllib.parse import quote, urlencode

HERE = os.path.dirname(os.path.abspath(__file__))
MOCK = os.path.join(HERE, "mock_api.py")
TOKEN = "1|s3cr3t-t0ken-for-tests"
AUTH = {"Authorization": "Bearer " + TOKEN}
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
DT_FIELDS = ["appointment_datetime", "confirmed_at", "cancelled_at", "created_at", "updated_at"]
BIG_BATCH = "2025-07-01T03:00:00.000000Z"


def ts(s):
    """Wire datetime -> aware datetime (3.11 fromisoformat takes Z and offsets)."""
    return datetime.fromisoformat(s)


class MockProcess:
    def __init__(self, *args, rows=500, seed=42):
        self.dir = tempfile.TemporaryDirectory()
        self.port_file = os.path.join(self.dir.name, "port")
        self.log_file = os.path.join(self.dir.name, "requests.jsonl")
        self.err = open(os.path.join(self.dir.name, "stderr"), "w+")
        cmd = [sys.executable, MOCK, "--port", "0", "--port-file", self.port_file,
               "--token", TOKEN, "--rows", str(rows), "--seed", str(seed),
               "--log-file", self.log_file] + list(args)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.err)
        deadline = time.time() + 20
        while not os.path.exists(self.port_file):
            if self.proc.poll() is not None or time.time() > deadline:
                self.err.seek(0)
                raise RuntimeError("mock did not start: " + self.err.read())
            time.sleep(0.05)
        with open(self.port_file) as fh:
            self.port = int(fh.read())

    def request(self, method, path, body=None, headers=None, auth=True, timeout=10):
        h = dict(AUTH) if auth else {}
        h.update(headers or {})
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            h.setdefault("Content-Type", "application/json")
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def api(self, path, params=None, **kw):
        """GET under /api/crm; returns (status, headers, parsed JSON or text)."""
        url = "/api/crm" + path + ("?" + urlencode(params) if params else "")
        st, h, b = self.get(url, **kw)
        if h.get("content-type", "").startswith("application/json"):
            return st, h, json.loads(b)
        return st, h, b.decode("utf-8")

    def control(self, method, name, body=None):
        st, h, b = self.request(method, "/_mock/" + name, body=body, auth=False)
        return st, json.loads(b)

    def config(self, **kw):
        st, cfg = self.control("POST", "config", kw)
        assert st == 200, cfg
        return cfg

    def data(self):
        return self.control("GET", "data")[1]

    def raw(self, path, timeout=5, extra=b""):
        """Plain socket request; returns (status, headers, body, everything)."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        try:
            s.sendall(("GET %s HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n"
                       "Connection: close\r\n\r\n" % (path, TOKEN)).encode() + extra)
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        finally:
            s.close()
        if not data:
            return None, {}, b"", b""
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        return int(lines[0].split()[1]), headers, body, data

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.err.close()
        self.dir.cleanup()


class MockTestCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.m = MockProcess()

    @classmethod
    def tearDownClass(cls):
        cls.m.stop()

    def setUp(self):
        st, body = self.m.control("POST", "reset")
        self.assertEqual(st, 200, body)

    # helpers -------------------------------------------------------------

    def walk(self, per_page=100, params=None):
        """All pages of /appointments; returns (ids in order, list of pages)."""
        ids, pages, page = [], [], 1
        while True:
            p = dict(params or {}, per_page=per_page, page=page)
            st, _, body = self.m.api("/appointments", p)
            self.assertEqual(st, 200, body)
            pages.append(body)
            ids += [r["id"] for r in body["data"]]
            if page >= body["pagination"]["last_page"]:
                return ids, pages
            page += 1

    def total(self, params):
        st, _, body = self.m.api("/appointments", dict(params, per_page=1))
        self.assertEqual(st, 200, body)
        return body["pagination"]["total"]


class TestAuth(MockTestCase):
    def test_missing_wrong_and_good_token(self):
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"},
                        {"Authorization": "Bearer " + TOKEN + "x"}):
            st, h, b = self.m.get("/api/crm/appointments", auth=False, headers=headers)
            self.assertEqual(st, 401)
            self.assertEqual(json.loads(b), {"message": "Unauthenticated."})
            self.assertEqual(h["content-type"], "application/json")
        st, _, body = self.m.api("/appointments")
        self.assertEqual(st, 200)
        auths = [e["auth"] for e in self.m.control("GET", "log")[1]]
        self.assertEqual(auths, ["missing", "wrong", "wrong", "wrong", "ok"])

    def test_unknown_route_and_method(self):
        st, _, body = self.m.api("/nothing")
        self.assertEqual(st, 404)
        st, _, b = self.m.request("POST", "/api/crm/appointments", body=b"{}")
        self.assertEqual(st, 405)


class TestListing(MockTestCase):
    def test_walk_all_rows_once_id_asc(self):
        ids, pages = self.walk(100)
        self.assertEqual(ids, list(range(1, 501)))
        self.assertEqual(len(pages), 5)
        p = pages[1]["pagination"]
        self.assertEqual(p, {"total": 500, "per_page": 100, "current_page": 2,
                             "last_page": 5, "from": 101, "to": 200})
        self.assertEqual(pages[0]["success"], True)
        # rows equal the canonical data
        data = self.m.data()
        st, _, body = self.m.api("/appointments", {"per_page": 100, "page": 3})
        self.assertEqual(body["data"], data[200:300])

    def test_defaults_and_edges(self):
        st, _, body = self.m.api("/appointments")
        self.assertEqual(body["pagination"]["per_page"], 50)
        self.assertEqual(body["pagination"]["current_page"], 1)
        self.assertEqual(len(body["data"]), 50)
        st, _, body = self.m.api("/appointments", {"per_page": 100, "page": 99})
        self.assertEqual(body["data"], [])
        self.assertEqual(body["pagination"]["from"], None)
        self.assertEqual(body["pagination"]["to"], None)
        self.assertEqual(body["pagination"]["last_page"], 5)
        st, _, body = self.m.api("/appointments", {"created_after": "2099-01-01"})
        self.assertEqual(body["pagination"], {"total": 0, "per_page": 50, "current_page": 1,
                                              "last_page": 1, "from": None, "to": None})
        st, _, body = self.m.api("/appointments", {"per_page": 7, "page": 72})
        self.assertEqual(body["pagination"]["from"], 498)
        self.assertEqual(body["pagination"]["to"], 500)
        # unknown params ignored, empty values count as absent
        st, _, body = self.m.api("/appointments", {"foo": "bar", "status": "", "per_page": ""})
        self.assertEqual((st, body["pagination"]["total"]), (200, 500))
        # trailing slash, keep-alive, Content-Length on every response
        st, h, _ = self.m.get("/api/crm/appointments/")
        self.assertEqual(st, 200)
        self.assertIn("content-length", h)

    def test_filters(self):
        data = self.m.data()
        cases = [
            ({"status": "pending"}, lambda r: r["status"] == "pending"),
            ({"status": "no_show"}, lambda r: r["status"] == "no_show"),
            ({"status": "in_progress"}, lambda r: r["status"] == "in_progress"),
            ({"location": "adelaide"}, lambda r: r["location"] == "adelaide"),
            ({"enquiry_type": "pr_complex"}, lambda r: r["enquiry_type"] == "pr_complex"),
            ({"start_date": "2024-11-01", "end_date": "2024-11-30"},
             lambda r: "2024-11-01" <= r["appointment_date"] <= "2024-11-30"),
            ({"start_date": "2025-12-31"}, lambda r: r["appointment_date"] >= "2025-12-31"),
            ({"end_date": "2024-01-05"}, lambda r: r["appointment_date"] <= "2024-01-05"),
            ({"created_after": "2025-06-01T00:00:00Z"},
             lambda r: ts(r["created_at"]) > ts("2025-06-01T00:00:00Z")),
            ({"updated_after": "2025-01-01", "status": "completed", "location": "melbourne"},
             lambda r: ts(r["updated_at"]) > ts("2025-01-01T00:00:00Z")
             and r["status"] == "completed" and r["location"] == "melbourne"),
        ]
        for params, pred in cases:
            with self.subTest(params=params):
                ids, _ = self.walk(100, params)
                self.assertEqual(ids, [r["id"] for r in data if pred(r)])
                self.assertTrue(ids)

    def test_datetime_parameter_formats(self):
        want = self.total({"updated_after": "2024-11-10T14:25:00Z"})
        for v in ["2024-11-10T14:25:00Z", "2024-11-10 14:25:00", "2024-11-10T14:25:00.000Z",
                  "2024-11-10T14:25:00.000000Z", "2024-11-11T01:25:00+11:00",
                  "2024-11-11T00:25:00+1000", "2024-11-10T09:25:00-05:00",
                  "2024-11-10T14:25:00z", "2024-11-10t14:25:00"]:
            with self.subTest(v=v):
                self.assertEqual(self.total({"updated_after": v}), want)
        self.assertEqual(self.total({"updated_after": "2024-11-10"}),
                         self.total({"updated_after": "2024-11-10T00:00:00Z"}))
        self.assertGreaterEqual(self.total({"updated_after": "2024-11-10T14:25:00.5Z"}), 0)

    def test_422(self):
        bad = [("status", "bogus"), ("status", "Pending"), ("location", "sydney"),
               ("enquiry_type", "TR"), ("start_date", "2024-13-01"),
               ("start_date", "2024/11/01"), ("end_date", "2024-02-30"),
               ("end_date", "2024-11-10T00:00:00Z"), ("created_after", "yesterday"),
               ("updated_after", "2024-11-10T25:00:00Z"),
               ("updated_after", "2024-11-10T14:25:00 10:00"),   # unencoded "+"
               ("per_page", "0"), ("per_page", "101"), ("per_page", "abc"),
               ("per_page", "1.5"), ("page", "0"), ("page", "-1"), ("page", "x")]
        for name, value in bad:
            with self.subTest(name=name, value=value):
                st, _, body = self.m.api("/appointments", {name: value})
                self.assertEqual(st, 422, body)
                self.assertEqual(list(body["errors"]), [name])
                self.assertIsInstance(body["errors"][name][0], str)
                self.assertTrue(body["message"].startswith("The "))
        st, _, body = self.m.api("/appointments", {"status": "bogus"})
        self.assertEqual(body, {"message": "The status field is invalid.",
                                "errors": {"status": ["The selected status is invalid."]}})
        st, _, body = self.m.api("/appointments", {"status": "x", "page": "0"})
        self.assertEqual(set(body["errors"]), {"status", "page"})
        for path, params in [("/appointments/recent", {"minutes": "0"}),
                             ("/appointments/recent", {"minutes": "1441"}),
                             ("/appointments/recent", {"minutes": "ten"}),
                             ("/appointments/stats", {"start_date": "2024-11"}),
                             ("/appointments/export", {"status": "bogus"})]:
            with self.subTest(path=path, params=params):
                self.assertEqual(self.m.api(path, params)[0], 422)

    def test_single_and_404(self):
        data = {r["id"]: r for r in self.m.data()}
        st, _, body = self.m.api("/appointments/42")
        self.assertEqual(body, {"success": True, "data": data[42]})
        for bad in ["0", "501", "abc", "-1", "1.5", "99999999999999999999"]:
            st, _, body = self.m.api("/appointments/" + bad)
            self.assertEqual(st, 404)
            self.assertEqual(body, {"success": False, "message": "Appointment not found."})

    def test_keep_alive(self):
        c = http.client.HTTPConnection("127.0.0.1", self.m.port, timeout=5)
        for i in range(1, 6):
            c.request("GET", "/api/crm/appointments/%d" % i, headers=AUTH)
            r = c.getresponse()
            self.assertEqual(json.loads(r.read())["data"]["id"], i)
            self.assertFalse(r.will_close)
        c.close()


class TestOtherEndpoints(MockTestCase):
    def test_recent(self):
        st, _, body = self.m.api("/appointments/recent")
        self.assertEqual(body, {"success": True, "count": 0, "data": []})
        st, res = self.m.control("POST", "mutate", {"update": [5, 7], "insert": 1})
        self.assertEqual(res["updated"], [5, 7])
        self.assertEqual(res["inserted"], [501])
        st, _, body = self.m.api("/appointments/recent", {"minutes": 1})
        self.assertEqual(body["count"], 3)
        self.assertEqual(sorted(r["id"] for r in body["data"]), [5, 7, 501])
        self.assertNotIn("pagination", body)
        # the window follows the mock clock
        self.m.config(clock_offset_seconds=3600)
        self.assertEqual(self.m.api("/appointments/recent", {"minutes": 30})[2]["count"], 0)
        self.assertEqual(self.m.api("/appointments/recent", {"minutes": 90})[2]["count"], 3)

    def test_export_matches_data(self):
        st, h, text = self.m.api("/appointments/export")
        self.assertEqual(st, 200)
        self.assertEqual(h["content-type"], "text/csv; charset=UTF-8")
        self.assertTrue(text.endswith("\r\n"))
        rows = list(csv.reader(io.StringIO(text, newline="")))
        header, rows = rows[0], rows[1:]
        scalars = [f for f in FIELDS if f not in ("assigned_admin", "payment")]
        self.assertEqual(header, scalars + [
            "assigned_admin_id", "assigned_admin_name", "assigned_admin_email",
            "payment_id", "payment_status", "payment_amount", "payment_method",
            "payment_paid_at"])

        def s(v):
            return "" if v is None else {True: "true", False: "false"}.get(v, str(v)) \
                if isinstance(v, bool) else str(v)

        expect = []
        for r in self.m.data():
            a, p = r["assigned_admin"] or {}, r["payment"] or {}
            expect.append([s(r[f]) for f in scalars] + [
                s(a.get("id")), s(a.get("name")), s(a.get("email")), s(p.get("id")),
                s(p.get("status")), s(p.get("amount")), s(p.get("payment_method")),
                s(p.get("paid_at"))])
        self.assertEqual(rows, expect)
        # NULL is an empty unquoted field; quotes doubled; embedded newlines kept
        self.assertIn(",,", text)
        self.assertIn('""', text)
        self.assertTrue(any("\n" in v for row in rows for v in row))
        # filters apply, no paging
        st, _, text = self.m.api("/appointments/export", {"status": "cancelled",
                                                          "per_page": 5})
        rows = list(csv.reader(io.StringIO(text, newline="")))[1:]
        self.assertEqual(len(rows), self.total({"status": "cancelled"}))
        self.assertTrue(all(r[16] == "cancelled" for r in rows))

    def test_stats(self):
        data = self.m.data()
        st, _, body = self.m.api("/appointments/stats",
                                 {"start_date": "2024-11-01", "end_date": "2024-11-30"})
        self.assertEqual(body["period"], {"start_date": "2024-11-01T00:00:00.000000Z",
                                          "end_date": "2024-11-30T23:59:59.000000Z"})
        rows = [r for r in data if "2024-11-01" <= r["appointment_date"] <= "2024-11-30"]
        self.assertTrue(rows)
        paid = [r for r in rows if r["is_paid"]]
        want = {
            "total_appointments": len(rows),
            **{k: sum(r["status"] == k for r in rows)
               for k in ("pending", "confirmed", "completed", "cancelled")},
            "paid_appointments": len(paid),
            "total_revenue": "%.2f" % sum(Decimal(r["final_amount"]) for r in paid),
            "by_enquiry_type": {k: sum(r["enquiry_type"] == k for r in rows)
                                for k in ("tr", "tourist", "education", "pr_complex")},
            "by_location": {k: sum(r["location"] == k for r in rows)
                            for k in ("melbourne", "adelaide")},
        }
        self.assertEqual(body["stats"], want)
        # default period = current month of the mock clock
        now = datetime.now(timezone.utc)
        offset = (datetime(2025, 2, 14, 12, tzinfo=timezone.utc) - now).total_seconds()
        self.m.config(clock_offset_seconds=offset)
        st, _, dflt = self.m.api("/appointments/stats")
        st, _, expl = self.m.api("/appointments/stats", {"start_date": "2025-02-01",
                                                         "end_date": "2025-02-28"})
        self.assertEqual(dflt, expl)
        self.assertEqual(dflt["period"]["end_date"], "2025-02-28T23:59:59.000000Z")


class TestData(MockTestCase):
    def test_shape_and_consistency(self):
        data = self.m.data()
        self.assertEqual([r["id"] for r in data], list(range(1, 501)))
        names = {r["full_name"] for r in data}
        for n in ["José Álvarez", "Zoë O'Brien", "李雷", "Nguyễn Thị Ngọc", "Ægir Þórsson"]:
            self.assertIn(n, names)
        emails = {}
        for r in data:
            self.assertEqual(list(r), FIELDS)
            if r["email"]:
                emails.setdefault(r["email"].lower(), set()).add(r["email"])
            self.assertLessEqual(ts(r["created_at"]), ts(r["updated_at"]))
            for f in DT_FIELDS:
                if r[f] is not None:
                    self.assertRegex(r[f], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
            self.assertTrue("2024-01-01" <= r["created_at"] < "2026")
            self.assertTrue("2024-01-01" <= r["appointment_date"] <= "2025-12-31")
            self.assertRegex(r["appointment_time"], r"^(09|1[0-6]):(00|30)$|^17:00$")
            self.assertEqual(r["appointment_datetime"], "%sT%s:00.000000Z"
                             % (r["appointment_date"], r["appointment_time"]))
            self.assertIn(r["duration_minutes"], (30, 45, 60))
            self.assertEqual(Decimal(r["final_amount"]),
                             Decimal(r["amount"]) - Decimal(r["discount_amount"]))
            self.assertRegex(r["amount"], r"^\d+\.\d\d$")
            self.assertEqual(r["payment"] is not None, r["is_paid"])
            if r["payment"]:
                self.assertEqual(list(r["payment"]),
                                 ["id", "status", "amount", "payment_method", "paid_at"])
            if r["assigned_admin"]:
                self.assertEqual(list(r["assigned_admin"]), ["id", "name", "email"])
            self.assertEqual(r["cancelled_at"] is not None, r["status"] == "cancelled")
            if r["status"] == "pending":
                self.assertIsNone(r["confirmed_at"])
            if r["status"] in ("confirmed", "completed"):
                self.assertIsNotNone(r["confirmed_at"])
        self.assertTrue(any(len(v) > 1 for v in emails.values()), "case-variant emails")
        self.assertEqual({r["status"] for r in data},
                         {"pending", "confirmed", "in_progress", "completed", "cancelled",
                          "no_show"})
        texts = [r["enquiry_details"] for r in data]
        self.assertIn(None, texts)
        for needle in ['"', ",", "\n", "\t", "🙂"]:
            self.assertTrue(any(t and needle in t for t in texts), needle)

    def test_shared_updated_at_crosses_page_boundary(self):
        self.m.config(order="updated_asc")
        ids, _ = self.walk(100)
        data = {r["id"]: r for r in self.m.data()}
        pos = [i for i, rid in enumerate(ids) if data[rid]["updated_at"] == BIG_BATCH]
        self.assertGreater(len(pos), 100)
        self.assertEqual(pos, list(range(pos[0], pos[-1] + 1)))
        self.assertTrue(any(pos[0] < b <= pos[-1] for b in (100, 200, 300, 400)))

    def test_deterministic(self):
        a = self.m.data()
        self.m.control("POST", "reset")
        self.assertEqual(self.m.data(), a)
        r1 = self.m.control("POST", "mutate", {"update_random": 5})[1]["updated"]
        self.m.control("POST", "reset")
        r2 = self.m.control("POST", "mutate", {"update_random": 5})[1]["updated"]
        self.assertEqual(r1, r2)
        st, res = self.m.control("POST", "reset", {"rows": 20, "seed": 7})
        self.assertEqual(res["rows"], 20)
        b = self.m.data()
        self.assertEqual(len(b), 20)
        self.assertNotEqual(b, a[:20])
        self.m.control("POST", "reset")
        self.assertEqual(len(self.m.data()), 500)


class TestSwitches(MockTestCase):
    def test_orders(self):
        data = {r["id"]: r for r in self.m.data()}
        self.m.config(order="id_desc")
        self.assertEqual(self.walk(100)[0], list(range(500, 0, -1)))
        self.m.config(order="updated_asc")
        ids = self.walk(100)[0]
        self.assertEqual(sorted(ids), list(range(1, 501)))
        keys = [ts(data[i]["updated_at"]) for i in ids]
        self.assertEqual(keys, sorted(keys))
        self.m.config(order="datetime_desc")
        ids = self.walk(100)[0]
        keys = [ts(data[i]["appointment_datetime"]) for i in ids]
        self.assertEqual(keys, sorted(keys, reverse=True))
        self.m.config(order="random")
        a = [r["id"] for r in self.m.api("/appointments", {"per_page": 100})[2]["data"]]
        b = [r["id"] for r in self.m.api("/appointments", {"per_page": 100})[2]["data"]]
        self.assertNotEqual(a, b)
        st, _, text = self.m.api("/appointments/export")
        self.assertEqual(len(list(csv.reader(io.StringIO(text, newline="")))), 501)

    def test_after_strict(self):
        strict = self.total({"updated_after": BIG_BATCH})
        self.m.config(after_strict=False)
        inclusive = self.total({"updated_after": BIG_BATCH})
        batch = sum(r["updated_at"] == BIG_BATCH for r in self.m.data())
        self.assertGreater(batch, 100)
        self.assertEqual(inclusive - strict, batch)

    def test_clock_offset_applies_to_writes(self):
        self.m.config(clock_offset_seconds=-7200)
        res = self.m.control("POST", "mutate", {"update": [3]})[1]
        row = self.m.api("/appointments/3")[2]["data"]
        lag = datetime.now(timezone.utc) - ts(row["updated_at"])
        self.assertTrue(7190 < lag.total_seconds() < 7210, lag)
        self.assertEqual(self.m.control("GET", "config")[1]["clock_offset_seconds"], -7200)

    def test_money_as_number(self):
        canon = self.m.api("/appointments/1")[2]["data"]
        self.m.config(money_as_number=True)
        row = self.m.api("/appointments/1")[2]["data"]
        for f in ("amount", "discount_amount", "final_amount"):
            self.assertIsInstance(row[f], float)
            self.assertEqual(row[f], float(canon[f]))
        if row["payment"]:
            self.assertIsInstance(row["payment"]["amount"], float)
        st, _, s = self.m.api("/appointments/stats", {"start_date": "2024-01-01"})
        self.assertIsInstance(s["stats"]["total_revenue"], float)

    def test_datetime_formats(self):
        canon = self.m.data()
        for style in ("plain_z", "offset", "offset_hms", "offset_west_hms"):
            self.m.config(datetime_format=style)
            _, pages = self.walk(100)
            rows = [r for p in pages for r in p["data"]]
            offsets = set()
            for a, b in zip(rows, canon):
                for f in DT_FIELDS:
                    if b[f] is None:
                        self.assertIsNone(a[f])
                        continue
                    self.assertEqual(ts(a[f]), ts(b[f]))
                    self.assertNotIn(".", a[f])
                    if style == "plain_z":
                        self.assertTrue(a[f].endswith("Z"))
                    else:
                        offsets.add(a[f][19:])
            if style == "offset":
                self.assertEqual(offsets, {"+10:00", "+11:00"})
            elif style == "offset_hms":
                self.assertEqual(offsets, {"+10:00:00", "+11:00:00"})
            elif style == "offset_west_hms":
                self.assertEqual(offsets, {"-05:00:00"})

    def test_envelope_notice(self):
        self.m.config(envelope_notice="a\u0000b")
        for path in ("/appointments", "/appointments/1"):
            body = self.m.api(path)[2]
            self.assertEqual(body["notice"], "a\u0000b", path)
        self.m.config(envelope_notice=None)
        self.assertNotIn("notice", self.m.api("/appointments")[2])

    def test_unlisted_ids(self):
        self.m.config(unlisted_ids=[2, 3])
        body = self.m.api("/appointments", {"per_page": 5})[2]
        self.assertEqual([r["id"] for r in body["data"]], [1, 4, 5])
        self.assertEqual(body["pagination"]["total"], 500)
        self.m.config(unlisted_ids=[])
        self.assertEqual(len(self.m.api("/appointments", {"per_page": 5})[2]["data"]), 5)

    def test_omit_pagination(self):
        self.m.config(omit_pagination=True)
        body = self.m.api("/appointments", {"per_page": 5})[2]
        self.assertNotIn("pagination", body)
        self.assertEqual(len(body["data"]), 5)

    def test_repeated_ids(self):
        self.m.config(repeated_ids=[2, 4, 7])
        pages = [self.m.api("/appointments", {"per_page": 5, "page": p})[2] for p in (1, 2)]
        self.assertEqual([r["id"] for r in pages[0]["data"]], [1, 2, 3, 4, 5])
        self.assertEqual([r["id"] for r in pages[1]["data"]], [6, 7, 8, 9, 10, 2, 4])
        self.assertEqual(pages[1]["pagination"]["total"], 500)

    def test_extra_fields(self):
        self.m.config(extra_fields=True)
        st, _, body = self.m.api("/appointments", {"per_page": 100})
        self.assertIn("meta", body)
        self.assertIn("path", body["pagination"])
        row = body["data"][0]
        self.assertIn("internal_ref", row)
        self.assertIn("metadata", row)
        self.assertTrue(set(FIELDS) < set(row))
        self.assertTrue(any(r["assigned_admin"] and "role" in r["assigned_admin"]
                            for r in body["data"]))
        self.assertTrue(any(r["payment"] and "currency" in r["payment"] for r in body["data"]))
        self.assertIn("meta", self.m.api("/appointments/1")[2])
        text = self.m.api("/appointments/export")[2]
        self.assertTrue(text.startswith("id,internal_ref,full_name,"))

    def test_json_escape_unicode(self):
        plain = self.m.get("/api/crm/appointments?per_page=100")[2]
        self.m.config(json_escape_unicode=True)
        esc = self.m.get("/api/crm/appointments?per_page=100")[2]
        self.assertTrue(esc.isascii())
        self.assertIn(b"\\/", esc)
        self.assertIn(b"\\ud83d", esc)                    # surrogate pairs for emoji
        self.assertEqual(json.loads(esc), json.loads(plain))

    def test_mutate_between_pages(self):
        self.m.config(order="updated_asc",
                      mutate_between_pages={"updates": 3, "inserts": 2})
        ids, pages = self.walk(100)
        totals = [p["pagination"]["total"] for p in pages]
        self.assertEqual(totals[:3], [500, 502, 504])
        # the walk is not a clean snapshot: some row seen twice or never
        final_ids = {r["id"] for r in self.m.data()}
        self.assertTrue(len(ids) != len(set(ids)) or set(ids) != final_ids)
        self.assertEqual(len(self.m.data()), 500 + 2 * len(pages))
        # each batch: distinct timestamps unless same_updated_at
        self.m.control("POST", "reset")
        self.m.config(mutate_between_pages={"updates": 4, "inserts": 2})
        self.m.api("/appointments")
        newest = sorted(r["updated_at"] for r in self.m.data())[-6:]
        self.assertEqual(len(set(newest)), 6)
        self.m.control("POST", "reset")
        self.m.config(mutate_between_pages={"updates": 4, "inserts": 2,
                                            "same_updated_at": True})
        self.m.api("/appointments")
        data = self.m.data()
        top = max(r["updated_at"] for r in data)
        self.assertEqual(sum(r["updated_at"] == top for r in data), 6)
        self.assertEqual(max(r["id"] for r in data), 502)

    def test_timestamp_precision_second(self):
        self.m.config(timestamp_precision="second")
        self.m.control("POST", "mutate", {"update": [1, 2]})
        d = self.m.data()
        self.assertTrue(d[0]["updated_at"].endswith(".000000Z"))
        self.m.config(timestamp_precision="micro")


class TestMutateControl(MockTestCase):
    def test_mutations(self):
        before = {r["id"]: r for r in self.m.data()}
        st, res = self.m.control("POST", "mutate", {
            "update": [10, 9999], "fields": {"status": "completed", "is_paid": True,
                                             "admin_notes": "x\ny"}})
        self.assertEqual((res["updated"], res["missing"]), ([10], [9999]))
        r = self.m.api("/appointments/10")[2]["data"]
        self.assertEqual((r["status"], r["status_display"], r["is_paid"], r["admin_notes"]),
                         ("completed", "Completed", True, "x\ny"))
        self.assertIsNotNone(r["payment"])
        self.assertGreater(ts(r["updated_at"]), ts(before[10]["updated_at"]))
        # delete: gone from every listing
        self.m.control("POST", "mutate", {"delete": [11, 12]})
        self.assertEqual(self.m.api("/appointments/11")[0], 404)
        self.assertEqual(self.total({}), 498)
        self.assertNotIn(",11,", "," + ",".join(str(i) for i in self.walk(100)[0]) + ",")
        text = self.m.api("/appointments/export")[2]
        self.assertEqual(len(list(csv.reader(io.StringIO(text, newline="")))), 499)
        # insert and batch update
        res = self.m.control("POST", "mutate", {"insert": 3, "batch_update": 7})[1]
        self.assertEqual(res["inserted"], [501, 502, 503])
        data = self.m.data()
        shared = [r for r in data if r["updated_at"] == res["batch_updated_at"]]
        self.assertEqual(len(shared), 7)
        # explicit updated_at override creates ties on demand
        self.m.control("POST", "mutate", {"update": [1, 2], "fields": {
            "updated_at": "2025-12-31T23:59:59Z", "amount": 10}})
        r1 = self.m.api("/appointments/1")[2]["data"]
        self.assertEqual((r1["updated_at"], r1["amount"]), ("2025-12-31T23:59:59.000000Z", "10.00"))

    def test_bad_control_requests(self):
        for name, body in [("config", b"{nope"), ("config", b"[1]"),
                           ("config", {"order": "sideways"}), ("config", {"bogus": 1}),
                           ("config", {"fault": {"mode": "explode"}}),
                           ("config", {"rate_limit_per_minute": -1}),
                           ("mutate", {"update": ["a"]}), ("mutate", {"fields": {"id": 3}}),
                           ("mutate", {"update": [1], "fields": {"created_at": "soon"}}),
                           ("reset", {"rows": "many"})]:
            with self.subTest(name=name, body=body):
                st, res = self.m.control("POST", name, body)
                self.assertEqual(st, 400, res)
        self.assertEqual(self.m.control("GET", "health"), (200, {"ok": True}))
        self.assertEqual(self.m.control("GET", "nope")[0], 404)
        self.assertEqual(self.m.control("GET", "reset")[0], 405)


class TestFaults(MockTestCase):
    P = "/api/crm/appointments?per_page=5"

    def fault(self, **f):
        self.m.config(fault=f)

    def test_status_faults(self):
        for mode, status, ctype in [("500", 500, "application/json"),
                                    ("503", 503, "text/html"), ("502html", 502, "text/html"),
                                    ("401", 401, "application/json"),
                                    ("422", 422, "application/json"),
                                    ("html200", 200, "text/html")]:
            with self.subTest(mode=mode):
                self.fault(mode=mode)
                st, h, body, _ = self.m.raw(self.P)
                self.assertEqual(st, status)
                self.assertTrue(h["content-type"].startswith(ctype))
                self.assertEqual(int(h["content-length"]), len(body))
                if ctype == "text/html":
                    self.assertIn(b"<html", body.lower())
                self.assertEqual(self.m.raw(self.P)[0], 200)    # count defaults to 1

    def test_429_fault(self):
        self.fault(mode="429", retry_after_seconds=3)
        st, h, body, _ = self.m.raw(self.P)
        self.assertEqual((st, h["retry-after"], h["x-ratelimit-remaining"]), (429, "3", "0"))
        self.assertEqual(json.loads(body), {"message": "Too Many Attempts."})
        self.fault(mode=429)
        self.assertEqual(self.m.raw(self.P)[1]["retry-after"], "1")

    def test_body_faults(self):
        self.fault(mode="invalid_json")
        st, h, body, _ = self.m.raw(self.P)
        self.assertEqual(st, 200)
        self.assertRaises(ValueError, json.loads, body)
        self.fault(mode="wrong_types")
        row = json.loads(self.m.raw(self.P)[2])["data"][0]
        self.assertEqual((row["id"], row["duration_minutes"], row["is_paid"],
                          row["appointment_date"]), ("abc", "lots", "yes", "not-a-date"))
        self.assertEqual(json.loads(self.m.raw(self.P)[2])["data"][0]["id"], 1)
        self.fault(mode="huge", huge_bytes=300_000)
        st, h, body, _ = self.m.raw(self.P)
        self.assertGreaterEqual(len(body), 299_000)
        self.assertEqual(json.loads(body)["data"], json.loads(self.m.raw(self.P)[2])["data"])

    def test_transport_faults(self):
        self.fault(mode="truncate")
        st, h, body, _ = self.m.raw(self.P)
        self.assertEqual(int(h["content-length"]) // 2, len(body))
        self.fault(mode="length_lie")
        st, h, body, _ = self.m.raw(self.P)
        self.assertEqual((st, h["content-length"]), (200, "1000000000"))
        self.assertLess(len(body), 100)
        self.fault(mode="reset")
        with self.assertRaises(ConnectionResetError):
            self.m.raw(self.P)
        self.fault(mode="slow", slow_seconds=0.6)
        t = time.time()
        st, h, body, _ = self.m.raw(self.P)
        self.assertGreater(time.time() - t, 0.5)
        self.assertEqual(len(json.loads(body)["data"]), 5)
        self.fault(mode="hang", hang_seconds=0.6)
        with self.assertRaises(socket.timeout):
            self.m.raw(self.P, timeout=0.3)
        t = time.time()
        self.fault(mode="hang", hang_seconds=0.6)
        self.assertEqual(self.m.raw(self.P, timeout=3)[3], b"")   # closed, nothing sent
        self.assertGreater(time.time() - t, 0.5)
        log = self.m.control("GET", "log")[1]
        self.assertEqual([e["fault"] for e in log if e["fault"]],
                         ["truncate", "length_lie", "reset", "slow", "hang", "hang"])
        self.assertEqual(log[2]["status"], "reset")
        self.assertEqual(self.m.control("GET", "health")[0], 200)    # still serving

    def test_redirect_fault(self):
        self.fault(mode="redirect", location="http://127.0.0.1:9{request}")
        st, h, body, _ = self.m.raw(self.P)
        self.assertEqual((st, h["location"]), (302, "http://127.0.0.1:9" + self.P))
        self.assertEqual(self.m.raw(self.P)[0], 200)      # count defaults to 1
        self.fault(mode="redirect", location="file:///etc/passwd", redirect_status=307)
        st, h, _, _ = self.m.raw(self.P)
        self.assertEqual((st, h["location"]), (307, "file:///etc/passwd"))
        log = self.m.control("GET", "log")[1]
        self.assertEqual([(e["status"], e["fault"]) for e in log],
                         [(302, "redirect"), (200, None), (307, "redirect")])
        for bad in [{"mode": "redirect"}, {"mode": "redirect", "location": ""},
                    {"mode": "redirect", "location": "x", "redirect_status": 200},
                    {"mode": "redirect", "location": "a\r\nSet-Cookie: x"}]:
            with self.subTest(bad=bad):
                self.assertEqual(self.m.control("POST", "config", {"fault": bad})[0], 400)

    def test_count_after_path(self):
        self.fault(mode="500", count=2, after=1, path="/stats")
        self.assertEqual(self.m.api("/appointments")[0], 200)     # path does not match
        got = [self.m.api("/appointments/stats")[0] for _ in range(5)]
        self.assertEqual(got, [200, 500, 500, 200, 200])
        cfg = self.m.control("GET", "config")[1]
        self.assertEqual(cfg["fault_state"], {"seen": 5, "fired": 2, "active": False})
        self.fault(mode="503", count=-1)
        self.assertEqual([self.m.api("/appointments/1")[0] for _ in range(3)], [503] * 3)
        self.m.config(fault=None)
        self.assertEqual(self.m.api("/appointments/1")[0], 200)


class TestRateLimitAndLog(MockTestCase):
    def test_rate_limit(self):
        self.m.config(rate_limit_per_minute=3)
        rem = []
        for _ in range(3):
            st, h, _ = self.m.api("/appointments/1")
            self.assertEqual((st, h["x-ratelimit-limit"]), (200, "3"))
            rem.append(h["x-ratelimit-remaining"])
        self.assertEqual(rem, ["2", "1", "0"])
        st, h, body = self.m.api("/appointments/1")
        self.assertEqual(st, 429)
        self.assertEqual(body, {"message": "Too Many Attempts."})
        self.assertTrue(1 <= int(h["retry-after"]) <= 60)
        self.assertEqual((h["x-ratelimit-limit"], h["x-ratelimit-remaining"]), ("3", "0"))
        self.m.config(retry_after_seconds=9)
        self.assertEqual(self.m.api("/appointments/1")[1]["retry-after"], "9")
        self.assertEqual(self.m.control("GET", "health")[0], 200)   # control not limited
        self.m.control("POST", "reset")
        st, h, _ = self.m.api("/appointments/1")
        self.assertNotIn("x-ratelimit-limit", h)

    def test_rate_limit_window_and_headers(self):
        self.m.config(rate_limit_per_minute=2, rate_limit_window_seconds=0.6)
        self.assertEqual([self.m.api("/appointments/1")[0] for _ in range(3)], [200, 200, 429])
        time.sleep(0.7)
        st, h, _ = self.m.api("/appointments/1")
        self.assertEqual((st, h["x-ratelimit-remaining"]), (200, "1"))
        self.m.config(rate_limit_headers=False, rate_limit_window_seconds=30)
        st, h, _ = self.m.api("/appointments/1")
        self.assertEqual(st, 200)
        self.assertNotIn("x-ratelimit-remaining", h)
        self.assertEqual(self.m.api("/appointments/1")[0], 200)
        st, h, _ = self.m.api("/appointments/1")
        self.assertEqual((st, h["x-ratelimit-remaining"]), (429, "0"))
        self.assertTrue(29 <= int(h["retry-after"]) <= 30)
        for bad in [0, -1, "5", True]:
            with self.subTest(bad=bad):
                self.assertEqual(self.m.control("POST", "config",
                                                {"rate_limit_window_seconds": bad})[0], 400)

    def test_date_header_switch(self):
        st, h, _ = self.m.api("/appointments?per_page=5")
        self.assertEqual(st, 200)
        self.assertIn("date", h)
        self.m.config(date_header=False)
        for path in ("/appointments?per_page=5", "/appointments/1", "/appointments/999999"):
            st, h, _ = self.m.api(path)
            self.assertNotIn("date", h, path)
        self.assertEqual(self.m.control("POST", "config", {"date_header": "no"})[0], 400)
        self.m.control("POST", "reset")
        self.assertIn("date", self.m.api("/appointments/1")[1])

    def test_connection_and_accept_logged(self):
        c = http.client.HTTPConnection("127.0.0.1", self.m.port, timeout=5)
        for _ in range(2):
            c.request("GET", "/api/crm/appointments/1",
                      headers=dict(AUTH, Accept="application/json"))
            c.getresponse().read()
        port = c.sock.getsockname()[1]
        c.close()
        self.m.get("/api/crm/appointments/2")            # a new connection, no Accept
        log = self.m.control("GET", "log")[1]
        self.assertEqual(log[0]["conn"], log[1]["conn"])
        self.assertNotEqual(log[1]["conn"], log[2]["conn"])
        self.assertEqual([e["client_port"] for e in log[:2]], [port, port])
        self.assertEqual([e["accept"] for e in log], ["application/json"] * 2 + [None])

    def test_request_log(self):
        self.m.get("/api/crm/appointments?status=pending&x=a%20b&x=c&per_page=2")
        self.m.get("/api/crm/appointments/7", auth=False)
        self.m.get("/api/crm/appointments?updated_after=2024-11-10T14%3A25%3A00%2B10%3A00")
        log = self.m.control("GET", "log")[1]
        self.assertEqual(len(log), 3)
        e = log[0]
        self.assertEqual((e["seq"], e["method"], e["path"], e["status"], e["auth"]),
                         (1, "GET", "/api/crm/appointments", 200, "ok"))
        self.assertEqual(e["query"], {"status": ["pending"], "x": ["a b", "c"],
                                      "per_page": ["2"]})
        self.assertEqual(e["raw_query"], "status=pending&x=a%20b&x=c&per_page=2")
        self.assertIsInstance(e["ts"], float)
        self.assertEqual((log[1]["status"], log[1]["auth"]), (401, "missing"))
        self.assertEqual(log[2]["query"]["updated_after"], ["2024-11-10T14:25:00+10:00"])
        self.assertEqual(self.m.control("DELETE", "log")[0], 200)
        self.assertEqual(self.m.control("GET", "log")[1], [])

    def test_token_never_logged(self):
        self.m.get("/api/crm/appointments/1")
        self.m.get("/api/crm/appointments/1", headers={"Authorization": "Bearer " + TOKEN + "z"})
        secret = TOKEN.split("|")[1]
        deadline = time.time() + 3     # the file line is written after the reply
        while True:
            with open(self.m.log_file, encoding="utf-8") as fh:
                file_text = fh.read()
            if '"auth": "wrong"' in file_text or time.time() > deadline:
                break
            time.sleep(0.05)
        for text in (self.m.get("/_mock/log", auth=False)[2].decode(),
                     self.m.get("/_mock/config", auth=False)[2].decode(), file_text):
            self.assertNotIn(secret, text)
        self.assertIn('"auth": "wrong"', file_text)


class TestProcess(unittest.TestCase):
    def test_cli_rate_limit_and_sigterm(self):
        m = MockProcess("--rate-limit", "2", rows=10, seed=1)
        try:
            self.assertEqual(len(m.data()), 10)
            sts = [m.api("/appointments")[0] for _ in range(3)]
            self.assertEqual(sts, [200, 200, 429])
            self.assertEqual(m.control("GET", "config")[1]["rate_limit_per_minute"], 2)
            # a hung request must not delay the exit
            m.config(fault={"mode": "hang", "hang_seconds": 30})
            s = socket.create_connection(("127.0.0.1", m.port))
            s.sendall(b"GET /api/crm/appointments HTTP/1.1\r\nAuthorization: Bearer "
                      + TOKEN.encode() + b"\r\n\r\n")
            time.sleep(0.1)
            t = time.time()
            m.proc.send_signal(signal.SIGTERM)
            self.assertEqual(m.proc.wait(5), 0)
            self.assertLess(time.time() - t, 3)
            s.close()
        finally:
            m.stop()

    def test_shutdown_endpoint(self):
        m = MockProcess(rows=0)
        try:
            st, _, body = m.api("/appointments")
            self.assertEqual(body["pagination"]["last_page"], 1)
            self.assertEqual(m.control("POST", "shutdown"), (200, {"ok": True}))
            self.assertEqual(m.proc.wait(5), 0)
        finally:
            m.stop()


if __name__ == "__main__":
    unittest.main(verbosity=1)
