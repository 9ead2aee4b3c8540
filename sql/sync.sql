--
-- sync: crm_sync_now() / crm_sync_full() into crm.appointments, the CRM
-- records the triggers derive, and exact equality with the remote after every
-- sync, under each behaviour the API does not promise.
--
SELECT mock.reset();

-- crm.appointments of server mockapi against the mock's whole data set,
-- field by field, plus the CRM invariants.
CREATE FUNCTION sync_check() RETURNS text LANGUAGE sql AS $$
  WITH m AS (
    SELECT * FROM jsonb_to_recordset(mock.data()) AS r(
      id bigint, full_name text, email text, phone text, location text, meeting_type text,
      preferred_language text, enquiry_type text, enquiry_type_display text, service_type text,
      specific_service text, enquiry_details text, appointment_date date, appointment_time time,
      appointment_datetime timestamptz, duration_minutes int, status text, status_display text,
      is_paid boolean, amount numeric, discount_amount numeric, final_amount numeric,
      promo_code text, assigned_admin jsonb, payment jsonb, admin_notes text, client_notes text,
      confirmed_at timestamptz, cancelled_at timestamptz, cancellation_reason text,
      created_at timestamptz, updated_at timestamptz)
  ), a AS (
    SELECT * FROM crm.appointments WHERE server_name = 'mockapi' AND sync_status = 'synced'
  ), diff AS (
    SELECT m.id FROM m JOIN a ON a.external_id = m.id
     WHERE (m.full_name, m.email, m.phone, m.location, m.meeting_type, m.preferred_language,
            m.enquiry_type, m.enquiry_type_display, m.service_type, m.specific_service,
            m.enquiry_details, m.appointment_date, m.appointment_time, m.appointment_datetime,
            m.duration_minutes, m.status, m.status_display, m.is_paid, m.amount,
            m.discount_amount, m.final_amount, m.promo_code, m.admin_notes, m.client_notes,
            m.confirmed_at, m.cancelled_at, m.cancellation_reason, m.created_at, m.updated_at,
            m.payment->>'status', m.payment->>'payment_method', (m.payment->>'paid_at')::timestamptz,
            (m.assigned_admin->>'id')::bigint, m.assigned_admin->>'name', m.assigned_admin->>'email')
           IS DISTINCT FROM
           (a.client_name, a.client_email, a.client_phone, a.location, a.meeting_type,
            a.preferred_language, a.enquiry_type, a.enquiry_type_display, a.service_type,
            a.specific_service, a.enquiry_details, a.appointment_date, a.appointment_time,
            a.appointment_datetime, a.duration_minutes, a.status, a.status_display, a.is_paid,
            a.amount, a.discount_amount, a.final_amount, a.promo_code, a.admin_notes,
            a.client_notes, a.confirmed_at, a.cancelled_at, a.cancellation_reason,
            a.source_created_at, a.source_updated_at, a.payment_status, a.payment_method,
            a.paid_at, a.assigned_admin_id, a.assigned_admin_name, a.assigned_admin_email)
  )
  SELECT format('remote %s, local %s, missing %s, extra %s, different %s; '
                'contacts per email > 1: %s, leads per appointment <> 1: %s, paid without deal: %s, deals per appointment > 1: %s',
    (SELECT count(*) FROM m), (SELECT count(*) FROM a),
    (SELECT count(*) FROM m WHERE NOT EXISTS (SELECT 1 FROM a WHERE a.external_id = m.id)),
    (SELECT count(*) FROM a WHERE NOT EXISTS (SELECT 1 FROM m WHERE m.id = a.external_id)),
    (SELECT count(*) FROM diff),
    (SELECT count(*) FROM (SELECT lower(email) FROM crm.contacts GROUP BY 1 HAVING count(*) > 1) x),
    (SELECT count(*) FROM crm.appointments ap
      WHERE (SELECT count(*) FROM crm.leads l WHERE l.appointment_id = ap.id) <> 1),
    (SELECT count(*) FROM crm.appointments ap WHERE ap.is_paid
        AND NOT EXISTS (SELECT 1 FROM crm.deals d WHERE d.appointment_id = ap.id)),
    (SELECT count(*) FROM (SELECT appointment_id FROM crm.deals GROUP BY 1 HAVING count(*) > 1) x))
$$;

-- The columns of a sync_log row that do not depend on the clock.
CREATE VIEW last_sync AS
  SELECT sync_type, status, records_fetched AS fetched, records_created AS created,
         records_updated AS updated, records_unchanged AS unchanged, records_failed AS failed,
         records_missing AS missing, requests, error_message
    FROM crm.sync_log WHERE server_name = 'mockapi' ORDER BY id DESC LIMIT 1;

-- first sync: everything, each appointment written once (inserted with the
-- ids of its contact, lead and deal, never updated to link them).  Counted in
-- the table's statistics: the worker flushes them as it exits, which
-- crm_sync_now waits for, and no vacuum or pruning takes them back as it can
-- dead tuples.  xmin and xmax cannot tell: an update in the inserting
-- transaction keeps xmin, and the foreign keys of leads and deals lock every
-- row, so xmax is set either way.
SELECT count(*) AS appointments_before FROM crm.appointments;
SELECT n_tup_ins AS ins_before, n_tup_upd AS upd_before
  FROM pg_stat_all_tables WHERE relid = 'crm.appointments'::regclass \gset
SELECT status, records_fetched, records_created, requests FROM crm_sync_now('mockapi');
SELECT n_tup_ins - :ins_before AS inserted, n_tup_upd - :upd_before AS updated
  FROM pg_stat_all_tables WHERE relid = 'crm.appointments'::regclass;
-- and the links written at insert are the records' ids
SELECT count(*) AS wrongly_linked FROM crm.appointments a
 WHERE (a.crm_contact_id, a.crm_lead_id, a.crm_deal_id) IS DISTINCT FROM
       ((SELECT c.id FROM crm.contacts c WHERE lower(c.email) = lower(a.client_email)),
        (SELECT l.id FROM crm.leads l WHERE l.appointment_id = a.id),
        (SELECT d.id FROM crm.deals d WHERE d.appointment_id = a.id));
SELECT sync_check();
SELECT (SELECT count(*) FROM crm.contacts) = (SELECT count(DISTINCT lower(email)) FROM jsonb_to_recordset(mock.data()) r(email text)) AS one_contact_per_email;

-- nothing changed: one request for the rows at the cursor, nothing written
SELECT status, records_created, records_updated, records_failed, requests <= 2 AS cheap FROM crm_sync_now('mockapi');

-- the API's clock ten minutes behind ours, then on time, then ten minutes
-- ahead (it only ever moves forward, as a clock does): the cursor is the
-- remote's, so no change is missed
SELECT mock.config('{"clock_offset_seconds": -600}');
SELECT jsonb_array_length(mock.mutate('{"update_random": 4}')->'updated') AS changed;
SELECT status, records_updated FROM crm_sync_now('mockapi');
SELECT sync_check();
SELECT mock.config('{"clock_offset_seconds": 0}');
SELECT jsonb_array_length(mock.mutate('{"update_random": 4}')->'updated') AS changed;
SELECT status, records_updated FROM crm_sync_now('mockapi');
SELECT mock.config('{"clock_offset_seconds": 600}');
SELECT jsonb_array_length(mock.mutate('{"update_random": 4}')->'updated') AS changed;
SELECT status, records_updated FROM crm_sync_now('mockapi');
SELECT sync_check();

-- 1 % of rows changed, 3 inserted: requests stay proportional to the changes
SELECT jsonb_array_length(mock.mutate('{"update_random": 5}')->'updated') AS changed;
SELECT jsonb_array_length(mock.mutate('{"insert": 3}')->'inserted') AS inserted;
SELECT status, records_created, records_updated, requests <= 3 AS within_ceil_changed_plus_2 FROM crm_sync_now('mockapi');
SELECT sync_check();

-- crm_sync_now() without a server syncs every enabled one, in name order
-- (a second server, whose token the API refuses: it fails at once)
\getenv mock_url CRM_MOCK_URL
CREATE SERVER mockapi_refused FOREIGN DATA WRAPPER crm_fdw
  OPTIONS (url :'mock_url', rate_limit_per_minute '0', retry_base_ms '10', timeout_ms '5000');
CREATE USER MAPPING FOR CURRENT_USER SERVER mockapi_refused OPTIONS (token '1|not-the-token');
SELECT server_name, status FROM crm_sync_now();
DROP SERVER mockapi_refused CASCADE;
DELETE FROM crm.sync_log WHERE server_name = 'mockapi_refused';
DELETE FROM crm.sync_state WHERE server_name = 'mockapi_refused';
SELECT crm_sync_enable('mockapi', false);
SELECT count(*) AS runs_when_disabled FROM crm_sync_now();
SELECT crm_sync_enable('mockapi');

-- each listing order, with rows updated and inserted between page requests
SELECT mock.config('{"order": "id_desc", "mutate_between_pages": {"updates": 2, "inserts": 1}}');
SELECT status FROM crm_sync_now('mockapi');
SELECT mock.config('{"order": "datetime_desc"}');
SELECT status FROM crm_sync_now('mockapi');
SELECT mock.config('{"order": "updated_asc", "mutate_between_pages": {"updates": 3, "inserts": 0, "same_updated_at": true}}');
SELECT status FROM crm_sync_now('mockapi');
SELECT mock.config('{"order": "random", "mutate_between_pages": null}');
SELECT status FROM crm_sync_now('mockapi');
SELECT mock.config('{"order": "id_asc"}');
SELECT status FROM crm_sync_now('mockapi');
SELECT sync_check();

-- many rows sharing one updated_at across a page boundary, inclusive updated_after
SELECT jsonb_array_length(mock.mutate('{"batch_update": 150}')->'updated') AS batch;
SELECT mock.config('{"after_strict": false}');
SELECT status, records_updated >= 150 AS whole_batch FROM crm_sync_now('mockapi');
SELECT status, records_updated FROM crm_sync_now('mockapi');
SELECT mock.config('{"after_strict": true}');
SELECT sync_check();

-- other formats of the same data change nothing
SELECT mock.config('{"money_as_number": true, "datetime_format": "offset", "extra_fields": true}');
SELECT status, records_updated, records_failed FROM crm_sync_full('mockapi');
SELECT mock.config('{"money_as_number": false, "datetime_format": "plain_z", "extra_fields": false}');
SELECT status, records_updated, records_failed FROM crm_sync_full('mockapi');
SELECT mock.config('{"datetime_format": "micro_z"}');
SELECT sync_check();

-- an older version of a row never overwrites the newer one
SELECT client_name AS stored_name FROM crm.appointments WHERE server_name = 'mockapi' AND external_id = 5;
SELECT mock.mutate('{"update": [5], "fields": {"full_name": "Stale Copy", "updated_at": "2020-01-01T00:00:00Z"}}') IS NOT NULL;
SELECT status, records_updated FROM crm_sync_full('mockapi');
SELECT client_name AS still_stored_name FROM crm.appointments WHERE server_name = 'mockapi' AND external_id = 5;
SELECT mock.mutate('{"update": [5], "fields": {"full_name": "Fresh Name"}}') IS NOT NULL;
SELECT status, records_updated FROM crm_sync_now('mockapi');
SELECT client_name FROM crm.appointments WHERE server_name = 'mockapi' AND external_id = 5;
SELECT sync_check();

-- deletes: only a full sync sees them, and only after a complete read
SELECT mock.mutate('{"delete": [10, 11]}')->'deleted' AS deleted;
SELECT status, records_missing FROM crm_sync_now('mockapi');
SELECT status, records_missing FROM crm_sync_full('mockapi');
SELECT external_id, sync_status FROM crm.appointments WHERE server_name = 'mockapi' AND external_id IN (10, 11, 12) ORDER BY 1;
SELECT sync_check();
-- a row gone remotely that comes back older than the copy (restored from a
-- backup) is taken as it is now: here row 12, marked gone with a newer copy
UPDATE crm.appointments SET sync_status = 'missing_remote', client_name = 'Newer Copy',
       source_updated_at = source_updated_at + interval '1 day'
 WHERE server_name = 'mockapi' AND external_id = 12;
SELECT status, records_updated FROM crm_sync_full('mockapi');
SELECT external_id, sync_status, client_name <> 'Newer Copy' AS remote_name
  FROM crm.appointments WHERE server_name = 'mockapi' AND external_id = 12;
SELECT sync_check();

-- a row that cannot be stored goes to crm.sync_errors; the rest are stored
SELECT mock.mutate('{"update": [20], "fields": {"duration_minutes": 3000000000}}')->'updated' AS broken;
SELECT mock.mutate('{"update": [21, 22]}')->'updated' AS fine;
SELECT status, records_updated, records_failed FROM crm_sync_now('mockapi');
SELECT external_appointment_id, error_type, retry_count, dead_letter, resolved_at IS NULL AS open
  FROM crm.sync_errors ORDER BY id;
SELECT failing_rows, dead_letters FROM crm.sync_status;
-- retried by id on later syncs, until it is stored or dead-lettered
SET crm_fdw.max_row_retries = 2;
SELECT status, records_failed FROM crm_sync_now('mockapi');
SELECT external_appointment_id, retry_count, dead_letter FROM crm.sync_errors ORDER BY id;
SELECT status, records_failed FROM crm_sync_now('mockapi');
SELECT external_appointment_id, retry_count, dead_letter FROM crm.sync_errors ORDER BY id;
SELECT failing_rows, dead_letters FROM crm.sync_status;
RESET crm_fdw.max_row_retries;
-- fixed remotely: the next full sync stores it and resolves the error
SELECT mock.mutate('{"update": [20], "fields": {"duration_minutes": 45}}')->'updated' AS fixed;
SELECT status, records_failed FROM crm_sync_full('mockapi');
SELECT external_appointment_id, resolved_at IS NOT NULL AS resolved FROM crm.sync_errors ORDER BY id;
SELECT sync_check();

-- a row whose GET by id keeps failing (HTTP 500 for it alone) is that row's
-- failure, not every sync's: counted, retried on later syncs, dead-lettered.
-- Its updated_at is old, so incremental walks do not list it: only GET by id.
SELECT mock.mutate('{"update": [30], "fields": {"duration_minutes": 3000000000, "updated_at": "2020-01-01T00:00:00Z"}}')->'updated' AS broken;
SELECT status, records_failed FROM crm_sync_full('mockapi');
SELECT mock.config('{"fault": {"mode": "500", "count": -1, "path": "/appointments/30"}}');
SET crm_fdw.max_row_retries = 2;
SELECT status, records_failed FROM crm_sync_now('mockapi');
SELECT external_appointment_id, error_type, retry_count, dead_letter, split_part(error_message, E'\n', 1) AS error
  FROM crm.sync_errors WHERE resolved_at IS NULL ORDER BY id;
-- so is an answer for it that does not parse
SELECT mock.config('{"fault": {"mode": "invalid_json", "count": -1, "path": "/appointments/30"}}');
SELECT status, records_failed FROM crm_sync_now('mockapi');
SELECT external_appointment_id, retry_count, dead_letter, split_part(error_message, E'\n', 1) AS error
  FROM crm.sync_errors WHERE resolved_at IS NULL ORDER BY id;
-- a dead letter is not asked for again
SELECT mock.clear_log();
SELECT status, records_failed FROM crm_sync_now('mockapi');
SELECT count(*) AS requests_for_30 FROM mock.requests() WHERE path LIKE '%/appointments/30';
-- ids failing one after another: the remote is failing, not the rows; the
-- third fails the sync (the two before it count a retry).  Ids the remote
-- does not have, so that nothing lists them and, once it answers, 404 resolves them.
INSERT INTO crm.sync_errors (server_name, external_appointment_id, error_message)
  SELECT 'mockapi', i, 'planted' FROM generate_series(4000, 4002) i;
SELECT mock.config('{"fault": {"mode": "500", "count": -1, "path": "/appointments/400"}}');
SELECT status, split_part(error_message, ' after', 1) AS error FROM crm_sync_now('mockapi');
SELECT external_appointment_id, retry_count, resolved_at IS NULL AS open FROM crm.sync_errors
 WHERE external_appointment_id >= 4000 ORDER BY 1;
-- a 503 or a 429 is the remote's state, not the row's: the sync fails at
-- the first id, and no retry is counted
SELECT mock.config('{"fault": {"mode": "503", "count": -1, "path": "/appointments/400"}}');
SELECT status, split_part(error_message, ' after', 1) AS error FROM crm_sync_now('mockapi');
SELECT mock.config('{"fault": {"mode": "429", "count": -1, "path": "/appointments/400", "retry_after_seconds": 0}}');
SELECT status, error_message FROM crm_sync_now('mockapi');
SELECT mock.config('{"fault": {"mode": "502html", "count": -1, "path": "/appointments/400"}}');
SELECT status, split_part(error_message, ' after', 1) AS error FROM crm_sync_now('mockapi');
SELECT external_appointment_id, retry_count FROM crm.sync_errors
 WHERE external_appointment_id >= 4000 ORDER BY 1;
-- a GET by id that times out is that row's failure, so that an appointment
-- the remote hangs on cannot stop every sync; a remote that hangs on every id
-- fails the sync at the third, as above
RESET crm_fdw.max_row_retries;
ALTER SERVER mockapi OPTIONS (SET timeout_ms '200', ADD max_retries '0');
SELECT mock.config('{"fault": {"mode": "hang", "count": -1, "path": "/appointments/400", "hang_seconds": 1}}');
SELECT status, error_message FROM crm_sync_now('mockapi');
SELECT mock.config('{"fault": {"mode": "hang", "count": -1, "path": "/appointments/4002", "hang_seconds": 1}}');
SELECT status, records_failed FROM crm_sync_now('mockapi');
SELECT external_appointment_id, retry_count, resolved_at IS NULL AS open,
       split_part(error_message, E'\n', 1) AS error
  FROM crm.sync_errors WHERE external_appointment_id >= 4000 ORDER BY 1;
ALTER SERVER mockapi OPTIONS (SET timeout_ms '5000', DROP max_retries);
SELECT mock.config('{"fault": null}');
SELECT mock.mutate('{"update": [30], "fields": {"duration_minutes": 45}}')->'updated' AS fixed;
SELECT status, records_failed FROM crm_sync_now('mockapi');
SELECT count(*) AS open_errors FROM crm.sync_errors WHERE resolved_at IS NULL;
SELECT sync_check();

-- remote failures: the sync fails, the cursor stays, the next sync catches up
SELECT sync_cursor AS cursor_before_failure FROM crm.sync_state WHERE server_name = 'mockapi' \gset
SELECT jsonb_array_length(mock.mutate('{"update_random": 6}')->'updated') AS changed;
SELECT mock.config('{"fault": {"mode": "503", "count": -1}}');
SELECT status, regexp_replace(error_message, 'updated_after=[^&]*', 'updated_after=…') AS error_message FROM crm_sync_now('mockapi');
SELECT sync_cursor = :'cursor_before_failure' AS cursor_unchanged FROM crm.sync_state WHERE server_name = 'mockapi';
SELECT mock.config('{"fault": {"mode": "429", "count": -1, "retry_after_seconds": 0}}');
SELECT status, regexp_replace(error_message, 'updated_after=[^&]*', 'updated_after=…') AS error_message FROM crm_sync_now('mockapi');
SELECT mock.config('{"fault": {"mode": "429", "count": 2, "retry_after_seconds": 1}}');
SELECT status, retries >= 2 AS waited_and_retried FROM crm_sync_now('mockapi');
SELECT mock.config('{"fault": {"mode": "invalid_json", "count": 1}}');
SELECT status, regexp_replace(error_message, 'updated_after=[^&]*', 'updated_after=…') AS error_message FROM crm_sync_now('mockapi');
SELECT mock.config('{"fault": null}');
SELECT status FROM crm_sync_now('mockapi');
SELECT sync_check();

-- a wrong token fails at once (no retries), and the token is nowhere
ALTER USER MAPPING FOR CURRENT_USER SERVER mockapi OPTIONS (SET token '1|not-the-token');
SELECT status, requests, regexp_replace(error_message, 'updated_after=[^&]*', 'updated_after=…') AS error_message FROM crm_sync_now('mockapi');
\getenv mock_token CRM_MOCK_TOKEN
ALTER USER MAPPING FOR CURRENT_USER SERVER mockapi OPTIONS (SET token :'mock_token');
SELECT count(*) AS token_in_sync_tables FROM crm.sync_log l, crm.sync_errors e
 WHERE strpos(l::text, '|not-the-token') > 0 OR strpos(e::text, '|not-the-token') > 0;

-- crm.sync_log keeps finished runs for crm_fdw.log_retention (30 days)
INSERT INTO crm.sync_log (server_name, sync_type, status, sync_started_at)
VALUES ('mockapi', 'incremental', 'completed', now() - interval '31 days'),
       ('mockapi', 'incremental', 'completed', now() - interval '29 days');
SELECT status FROM crm_sync_now('mockapi');
SELECT count(*) FILTER (WHERE sync_started_at < now() - interval '30 days') AS older_than_retention,
       count(*) FILTER (WHERE sync_started_at < now() - interval '28 days') AS within_retention
  FROM crm.sync_log;

-- crm.sync_status
SELECT server_name, enabled, last_status, appointments, missing_remote, failing_rows, dead_letters,
       running_sync_id IS NULL AS idle
  FROM crm.sync_status;

-- the triggers serve any writer: rows inserted and updated by hand
INSERT INTO crm.appointments (server_name, external_id, client_name, client_email, status, is_paid,
                              final_amount, enquiry_type_display, appointment_datetime)
VALUES ('manual', 1, 'Ana Lima', 'Ana.Lima@Example.com', 'pending', false, 100, 'Tourist Visa', '2025-03-01 10:00+00'),
       ('manual', 2, 'Ana Lima', 'ana.lima@example.com', 'confirmed', true, 150, 'Education', '2025-03-02 10:00+00');
SELECT c.email, c.name, count(l.id) AS leads
  FROM crm.contacts c JOIN crm.leads l ON l.contact_id = c.id
  JOIN crm.appointments a ON a.id = l.appointment_id AND a.server_name = 'manual'
 GROUP BY 1, 2;
SELECT a.external_id, l.source, l.status AS lead_status, d.title, d.amount, d.stage,
       a.crm_contact_id = l.contact_id AS linked_contact, a.crm_lead_id = l.id AS linked_lead,
       a.crm_deal_id IS NOT DISTINCT FROM d.id AS linked_deal
  FROM crm.appointments a JOIN crm.leads l ON l.appointment_id = a.id
  LEFT JOIN crm.deals d ON d.appointment_id = a.id
 WHERE a.server_name = 'manual' ORDER BY 1;
-- status changes move the lead and the deal; becoming paid creates a deal
UPDATE crm.appointments SET status = 'completed', final_amount = 140 WHERE server_name = 'manual' AND external_id = 2;
UPDATE crm.appointments SET is_paid = true, status = 'confirmed' WHERE server_name = 'manual' AND external_id = 1;
SELECT a.external_id, l.status AS lead_status, d.title, d.amount, d.stage
  FROM crm.appointments a JOIN crm.leads l ON l.appointment_id = a.id
  LEFT JOIN crm.deals d ON d.appointment_id = a.id
 WHERE a.server_name = 'manual' ORDER BY 1;
-- the maps are data
UPDATE crm.lead_status_map SET lead_status = 'won' WHERE appointment_status = 'completed';
UPDATE crm.appointments SET status = 'completed' WHERE server_name = 'manual' AND external_id = 1;
SELECT a.external_id, l.status FROM crm.appointments a JOIN crm.leads l ON l.appointment_id = a.id
 WHERE a.server_name = 'manual' ORDER BY 1;
UPDATE crm.lead_status_map SET lead_status = 'converted' WHERE appointment_status = 'completed';
-- idempotent: rewriting the same values changes no CRM record
SELECT max(xmin::text::bigint) AS before FROM (SELECT xmin FROM crm.contacts UNION ALL SELECT xmin FROM crm.leads UNION ALL SELECT xmin FROM crm.deals) x \gset
UPDATE crm.appointments SET status = status WHERE server_name = 'manual';
SELECT max(xmin::text::bigint) = :before AS nothing_rewritten
  FROM (SELECT xmin FROM crm.contacts UNION ALL SELECT xmin FROM crm.leads UNION ALL SELECT xmin FROM crm.deals) x;
-- a user's own INSERT ... SELECT from the foreign table gets the same records
INSERT INTO crm.appointments (server_name, external_id, client_name, client_email, status, is_paid, final_amount,
                              enquiry_type_display, appointment_datetime, source_updated_at)
SELECT 'by_hand', id, full_name, email, status, is_paid, final_amount, enquiry_type_display, appointment_datetime, updated_at
  FROM remote.appointments WHERE id <= 50;
SELECT count(*) AS leads, count(DISTINCT l.contact_id) AS contacts,
       (SELECT count(*) FROM crm.deals d JOIN crm.appointments a ON a.id = d.appointment_id AND a.server_name = 'by_hand') AS deals,
       (SELECT count(*) FROM crm.appointments WHERE server_name = 'by_hand' AND is_paid) AS paid
  FROM crm.leads l JOIN crm.appointments a ON a.id = l.appointment_id AND a.server_name = 'by_hand';
-- the setting that tells the insert trigger the links were drawn cannot make
-- it take ids the sequences never gave: such rows count as already linked
BEGIN;
SET LOCAL crm.store_links_drawn = on;
INSERT INTO crm.appointments (server_name, external_id, client_email, status, is_paid, crm_contact_id, crm_lead_id, crm_deal_id)
VALUES ('by_hand', 100000, 'forged@example.com', 'pending', true, 900000000001, 900000000001, 900000000001);
SELECT (SELECT count(*) FROM crm.contacts WHERE id = 900000000001) AS forged_contacts,
       (SELECT count(*) FROM crm.leads WHERE id = 900000000001) AS forged_leads,
       (SELECT count(*) FROM crm.deals WHERE id = 900000000001) AS forged_deals;
ROLLBACK;
DELETE FROM crm.appointments WHERE server_name IN ('manual', 'by_hand');
-- leave the mock as the next suite expects it
SELECT mock.reset();
