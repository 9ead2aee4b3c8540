/* crm_fdw--0.1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION crm_fdw" to load this file. \quit

CREATE FUNCTION crm_fdw_handler()
RETURNS fdw_handler
AS 'MODULE_PATHNAME'
LANGUAGE C STRICT;

CREATE FUNCTION crm_fdw_validator(text[], oid)
RETURNS void
AS 'MODULE_PATHNAME'
LANGUAGE C STRICT;

CREATE FOREIGN DATA WRAPPER crm_fdw
  HANDLER crm_fdw_handler
  VALIDATOR crm_fdw_validator;

COMMENT ON FOREIGN DATA WRAPPER crm_fdw IS 'reads a remote appointments (CRM) HTTP API';

-- ===================================================================
-- Local CRM tables: what the sync writes, and the records derived from it
-- ===================================================================
CREATE SCHEMA crm;

-- The guide's crm_appointments, one row per remote appointment and server.
-- Every field but the id may be null remotely, so none is NOT NULL here.
CREATE TABLE crm.appointments (
  id                    bigserial PRIMARY KEY,
  server_name           text NOT NULL,
  external_id           bigint NOT NULL,
  client_name           text,
  client_email          text,
  client_phone          text,
  appointment_datetime  timestamptz,
  appointment_date      date,
  appointment_time      time,
  duration_minutes      integer,
  location              text,
  meeting_type          text,
  preferred_language    text,
  enquiry_type          text,
  enquiry_type_display  text,
  service_type          text,
  specific_service      text,
  enquiry_details       text,
  status                text,
  status_display        text,
  confirmed_at          timestamptz,
  cancelled_at          timestamptz,
  cancellation_reason   text,
  is_paid               boolean,
  amount                numeric(10,2) DEFAULT 0,
  discount_amount       numeric(10,2) DEFAULT 0,
  final_amount          numeric(10,2) DEFAULT 0,
  promo_code            text,
  payment_id            bigint,
  payment_status        text,
  payment_method        text,
  paid_at               timestamptz,
  assigned_admin_id     bigint,
  assigned_admin_name   text,
  assigned_admin_email  text,
  admin_notes           text,
  client_notes          text,
  last_synced_at        timestamptz NOT NULL DEFAULT now(),
  source_created_at     timestamptz,
  source_updated_at     timestamptz,
  sync_status           text NOT NULL DEFAULT 'synced'
                        CHECK (sync_status IN ('synced', 'missing_remote')),
  sync_error            text,
  crm_lead_id           bigint,
  crm_contact_id        bigint,
  crm_deal_id           bigint,
  created_at            timestamptz NOT NULL DEFAULT now(),
  updated_at            timestamptz NOT NULL DEFAULT now(),
  UNIQUE (server_name, external_id)
);
CREATE INDEX appointments_client_email_idx ON crm.appointments (lower(client_email));
CREATE INDEX appointments_datetime_idx ON crm.appointments (appointment_datetime);
CREATE INDEX appointments_status_idx ON crm.appointments (status);
CREATE INDEX appointments_synced_at_idx ON crm.appointments (last_synced_at);
CREATE INDEX appointments_source_updated_idx ON crm.appointments (source_updated_at);

-- One contact per client email, compared case-insensitively.
CREATE TABLE crm.contacts (
  id                  bigserial PRIMARY KEY,
  email               text NOT NULL,
  name                text,
  phone               text,
  preferred_language  text,
  source_updated_at   timestamptz,
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX contacts_email_key ON crm.contacts (lower(email));

-- One lead per appointment.
CREATE TABLE crm.leads (
  id              bigserial PRIMARY KEY,
  appointment_id  bigint NOT NULL UNIQUE REFERENCES crm.appointments (id) ON DELETE CASCADE,
  contact_id      bigint REFERENCES crm.contacts (id),
  source          text NOT NULL DEFAULT 'Website Appointment',
  enquiry_type    text,
  service_type    text,
  details         text,
  status          text NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX leads_contact_idx ON crm.leads (contact_id);

-- One deal per paid appointment.
CREATE TABLE crm.deals (
  id                   bigserial PRIMARY KEY,
  appointment_id       bigint NOT NULL UNIQUE REFERENCES crm.appointments (id) ON DELETE CASCADE,
  contact_id           bigint REFERENCES crm.contacts (id),
  lead_id              bigint REFERENCES crm.leads (id),
  title                text NOT NULL,
  amount               numeric(10,2),
  stage                text NOT NULL,
  expected_close_date  timestamptz,
  created_at           timestamptz NOT NULL DEFAULT now(),
  updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deals_contact_idx ON crm.deals (contact_id);

-- The guide's two status mappings, as editable data.
CREATE TABLE crm.lead_status_map (
  appointment_status  text PRIMARY KEY,
  lead_status         text NOT NULL
);
INSERT INTO crm.lead_status_map VALUES
  ('pending', 'new'), ('confirmed', 'contacted'), ('in_progress', 'qualified'),
  ('completed', 'converted'), ('cancelled', 'lost'), ('no_show', 'lost');

CREATE TABLE crm.deal_stage_map (
  appointment_status  text PRIMARY KEY,
  deal_stage          text NOT NULL
);
INSERT INTO crm.deal_stage_map VALUES
  ('pending', 'discovery'), ('confirmed', 'proposal'), ('in_progress', 'negotiation'),
  ('completed', 'won'), ('cancelled', 'lost'), ('no_show', 'lost');

-- Every sync run, finished or not.
CREATE TABLE crm.sync_log (
  id                  bigserial PRIMARY KEY,
  server_name         text NOT NULL,
  sync_type           text NOT NULL CHECK (sync_type IN ('incremental', 'full')),
  status              text NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'skipped')),
  sync_started_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
  sync_completed_at   timestamptz,
  records_fetched     integer NOT NULL DEFAULT 0,
  records_created     integer NOT NULL DEFAULT 0,
  records_updated     integer NOT NULL DEFAULT 0,
  records_unchanged   integer NOT NULL DEFAULT 0,
  records_failed      integer NOT NULL DEFAULT 0,
  records_missing     integer NOT NULL DEFAULT 0,
  requests            integer NOT NULL DEFAULT 0,
  retries             integer NOT NULL DEFAULT 0,
  pages_done          integer NOT NULL DEFAULT 0,
  pages_total         integer,
  cursor_before       timestamptz,
  cursor_after        timestamptz,
  duration_ms         bigint,
  error_message       text,
  error_detail        text,
  worker_pid          integer,
  request_id          bigint,
  created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sync_log_server_idx ON crm.sync_log (server_name, id);
CREATE INDEX sync_log_request_idx ON crm.sync_log (request_id);

-- Rows that could not be stored: retried by id on later syncs.
CREATE TABLE crm.sync_errors (
  id                       bigserial PRIMARY KEY,
  sync_log_id              bigint REFERENCES crm.sync_log (id) ON DELETE SET NULL,
  server_name              text NOT NULL,
  external_appointment_id  bigint,
  error_type               text,
  error_message            text,
  error_data               jsonb,
  retry_count              integer NOT NULL DEFAULT 0,
  dead_letter              boolean NOT NULL DEFAULT false,
  resolved_at              timestamptz,
  created_at               timestamptz NOT NULL DEFAULT now(),
  updated_at               timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX sync_errors_open_key ON crm.sync_errors (server_name, external_appointment_id)
  WHERE resolved_at IS NULL;

-- Per server: the cursor (a remote updated_at) and whether scheduled syncs run.
CREATE TABLE crm.sync_state (
  server_name      text PRIMARY KEY,
  enabled          boolean NOT NULL DEFAULT true,
  sync_cursor      timestamptz,
  last_sync_id     bigint,
  last_full_sync   timestamptz,
  updated_at       timestamptz NOT NULL DEFAULT now()
);

-- The CRM data is the user's, not the extension's: pg_dump must keep it.
SELECT pg_catalog.pg_extension_config_dump('crm.appointments', '');
SELECT pg_catalog.pg_extension_config_dump('crm.appointments_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('crm.contacts', '');
SELECT pg_catalog.pg_extension_config_dump('crm.contacts_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('crm.leads', '');
SELECT pg_catalog.pg_extension_config_dump('crm.leads_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('crm.deals', '');
SELECT pg_catalog.pg_extension_config_dump('crm.deals_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('crm.sync_log', '');
SELECT pg_catalog.pg_extension_config_dump('crm.sync_log_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('crm.sync_errors', '');
SELECT pg_catalog.pg_extension_config_dump('crm.sync_errors_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('crm.sync_state', '');

-- ===================================================================
-- Contacts, leads and deals: the guide's createCRMRecords/updateCRMRecords,
-- set-wise, for any writer of crm.appointments
-- ===================================================================

-- Bring the contact, lead and deal of each appointment in line with it.
-- Idempotent: a second call with the same data writes nothing.
--
-- use_links: the appointments' crm_contact_id, crm_lead_id and crm_deal_id
-- were drawn from the sequences by crm._store_rows; records created now take
-- those ids, so the links are right without rewriting the appointments.
--
-- Every lookup of a contact, lead or deal is a correlated subquery, which
-- can only be an index probe: as joins, the planner picked hash joins over
-- sequential scans of the whole table on the strength of the statistics of a
-- table that was empty when last analyzed (and a sync grows it fast).
CREATE FUNCTION crm.refresh_crm_records(appointment_ids bigint[], use_links boolean DEFAULT false)
RETURNS void LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- Statement triggers fire for no rows too; nothing to do then (and no
  -- link-back UPDATE to fire them again).
  IF coalesce(cardinality(appointment_ids), 0) = 0 THEN
    RETURN;
  END IF;

  -- One contact per email; the newest appointment's details win.
  INSERT INTO crm.contacts AS c (id, email, name, phone, preferred_language, source_updated_at)
  SELECT DISTINCT ON (lower(a.client_email))
         CASE WHEN use_links AND a.crm_contact_id IS NOT NULL THEN a.crm_contact_id
              ELSE nextval('crm.contacts_id_seq') END,
         a.client_email, a.client_name, a.client_phone, a.preferred_language, a.source_updated_at
    FROM crm.appointments a
   WHERE a.id = ANY (appointment_ids) AND a.client_email IS NOT NULL
   ORDER BY lower(a.client_email), a.source_updated_at DESC NULLS LAST, a.id DESC
  ON CONFLICT ((lower(email))) DO UPDATE
     SET email = EXCLUDED.email, name = EXCLUDED.name, phone = EXCLUDED.phone,
         preferred_language = EXCLUDED.preferred_language,
         source_updated_at = EXCLUDED.source_updated_at, updated_at = now()
   WHERE (c.source_updated_at IS NULL OR EXCLUDED.source_updated_at >= c.source_updated_at)
     AND (c.email, c.name, c.phone, c.preferred_language)
         IS DISTINCT FROM (EXCLUDED.email, EXCLUDED.name, EXCLUDED.phone, EXCLUDED.preferred_language);

  -- One lead per appointment, its status following the appointment's.
  INSERT INTO crm.leads AS l (id, appointment_id, contact_id, source, enquiry_type, service_type, details, status)
  SELECT CASE WHEN use_links AND a.crm_lead_id IS NOT NULL THEN a.crm_lead_id
              ELSE nextval('crm.leads_id_seq') END,
         a.id,
         (SELECT c.id FROM crm.contacts c WHERE lower(c.email) = lower(a.client_email)),
         'Website Appointment', a.enquiry_type_display, a.service_type, a.enquiry_details,
         coalesce((SELECT m.lead_status FROM crm.lead_status_map m
                    WHERE m.appointment_status = a.status), 'new')
    FROM crm.appointments a
   WHERE a.id = ANY (appointment_ids)
  ON CONFLICT (appointment_id) DO UPDATE
     SET contact_id = EXCLUDED.contact_id, status = EXCLUDED.status, updated_at = now()
   WHERE (l.contact_id, l.status) IS DISTINCT FROM (EXCLUDED.contact_id, EXCLUDED.status);

  -- A deal once an appointment is paid; its stage and amount follow the appointment.
  INSERT INTO crm.deals AS d (id, appointment_id, contact_id, lead_id, title, amount, stage, expected_close_date)
  SELECT CASE WHEN use_links AND a.crm_deal_id IS NOT NULL THEN a.crm_deal_id
              ELSE nextval('crm.deals_id_seq') END,
         a.id,
         (SELECT c.id FROM crm.contacts c WHERE lower(c.email) = lower(a.client_email)),
         (SELECT l.id FROM crm.leads l WHERE l.appointment_id = a.id),
         coalesce(a.enquiry_type_display, '') || ' - ' || coalesce(a.client_name, ''),
         a.final_amount,
         coalesce((SELECT m.deal_stage FROM crm.deal_stage_map m
                    WHERE m.appointment_status = a.status), 'discovery'),
         a.appointment_datetime
    FROM crm.appointments a
   WHERE a.id = ANY (appointment_ids)
     -- with use_links the appointments are new: no deal of theirs exists
     AND (a.is_paid OR (NOT use_links AND
                        (SELECT x.id FROM crm.deals x WHERE x.appointment_id = a.id) IS NOT NULL))
  ON CONFLICT (appointment_id) DO UPDATE
     SET contact_id = EXCLUDED.contact_id, stage = EXCLUDED.stage, amount = EXCLUDED.amount,
         updated_at = now()
   WHERE (d.contact_id, d.stage, d.amount)
         IS DISTINCT FROM (EXCLUDED.contact_id, EXCLUDED.stage, EXCLUDED.amount);

  -- Link the records back to the appointment, where the links are not right
  -- already.  With use_links, the appointments are new: no lead or deal had
  -- their appointment_id, so the inserts above took every drawn lead id, and
  -- a drawn deal id where the appointment is paid (is_paid true; false or
  -- NULL makes no deal, so the link must be NULL), or failed on the id.  Those
  -- links are right without a probe.  The contact is not: another writer may
  -- have added the email since it was drawn, and its contact kept its id.
  UPDATE crm.appointments a
     SET crm_contact_id = x.contact_id, crm_lead_id = x.lead_id, crm_deal_id = x.deal_id
    FROM (SELECT a1.id,
                 (SELECT c.id FROM crm.contacts c WHERE lower(c.email) = lower(a1.client_email)) AS contact_id,
                 CASE WHEN use_links AND a1.crm_lead_id IS NOT NULL THEN a1.crm_lead_id
                      ELSE (SELECT l.id FROM crm.leads l WHERE l.appointment_id = a1.id) END AS lead_id,
                 CASE WHEN use_links AND (a1.crm_deal_id IS NOT NULL) = coalesce(a1.is_paid, false)
                      THEN a1.crm_deal_id
                      ELSE (SELECT d.id FROM crm.deals d WHERE d.appointment_id = a1.id) END AS deal_id
            FROM crm.appointments a1
           WHERE a1.id = ANY (appointment_ids)) x
   WHERE a.id = ANY (appointment_ids) AND a.id = x.id
     AND (a.crm_contact_id, a.crm_lead_id, a.crm_deal_id)
         IS DISTINCT FROM (x.contact_id, x.lead_id, x.deal_id);
END $$;

-- Rows that arrive already linked (a pg_dump being restored) keep their
-- records, unless crm._store_rows drew the links itself.  Drawn ids come from
-- the sequences; an id beyond a sequence's last value was not drawn (the
-- setting is an ordinary one), and taking it would leave a later nextval to
-- collide with it.
CREATE FUNCTION crm._appointments_inserted() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  links_drawn boolean := coalesce(current_setting('crm.store_links_drawn', true), '') = 'on';
  last_contact bigint;
  last_lead bigint;
  last_deal bigint;
BEGIN
  IF links_drawn THEN
    last_contact := coalesce(pg_sequence_last_value('crm.contacts_id_seq'), 0);
    last_lead := coalesce(pg_sequence_last_value('crm.leads_id_seq'), 0);
    last_deal := coalesce(pg_sequence_last_value('crm.deals_id_seq'), 0);
    links_drawn := NOT EXISTS (
      SELECT 1 FROM new_rows
       WHERE crm_contact_id > last_contact OR crm_lead_id > last_lead OR crm_deal_id > last_deal);
  END IF;
  PERFORM crm.refresh_crm_records(ARRAY(
    SELECT id FROM new_rows
     WHERE links_drawn
        OR crm_lead_id IS NULL
        OR (crm_contact_id IS NULL AND client_email IS NOT NULL)
        OR (crm_deal_id IS NULL AND is_paid)), links_drawn);
  RETURN NULL;
END $$;

-- Only rows whose CRM-relevant data changed (or that lack their records):
-- the link-back UPDATE above changes neither, so it stops here.  EXECUTE
-- plans the join of the transition tables for their actual sizes each time
-- (a cached plan keeps the nested loop chosen for the first, small one).
CREATE FUNCTION crm._appointments_updated() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  ids bigint[];
BEGIN
  EXECUTE $q$
    SELECT ARRAY(
      SELECT n.id FROM new_rows n JOIN old_rows o ON o.id = n.id
       WHERE (n.client_name, n.client_email, n.client_phone, n.preferred_language, n.status,
              n.is_paid, n.final_amount, n.enquiry_type_display, n.service_type,
              n.enquiry_details, n.appointment_datetime)
             IS DISTINCT FROM
             (o.client_name, o.client_email, o.client_phone, o.preferred_language, o.status,
              o.is_paid, o.final_amount, o.enquiry_type_display, o.service_type,
              o.enquiry_details, o.appointment_datetime)
          OR n.crm_lead_id IS NULL
          OR (n.crm_contact_id IS NULL AND n.client_email IS NOT NULL)
          OR (n.crm_deal_id IS NULL AND n.is_paid))$q$ INTO ids;
  PERFORM crm.refresh_crm_records(ids);
  RETURN NULL;
END $$;

CREATE TRIGGER appointments_crm_records_insert
  AFTER INSERT ON crm.appointments REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION crm._appointments_inserted();
CREATE TRIGGER appointments_crm_records_update
  AFTER UPDATE ON crm.appointments REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION crm._appointments_updated();

-- ===================================================================
-- The sync's set-wise store of one page
-- ===================================================================

-- Upsert rows (JSON arrays of API appointment objects, one per page) of one
-- server.
-- A version older than the stored one never overwrites it; an unchanged row
-- is not written at all.  A new appointment is inserted with the ids its
-- contact, lead and deal will have (crm.store_links_drawn tells the insert
-- trigger so): linking them afterwards would write every row twice.
CREATE FUNCTION crm._store_rows(p_server text, p_pages jsonb[],
                                OUT created integer, OUT updated integer)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET crm.store_links_drawn = on
AS $$
BEGIN
  WITH src AS (
    SELECT DISTINCT ON (r.id) r.*
      FROM unnest(p_pages) AS p(page), jsonb_to_recordset(p.page) AS r(
             id bigint, full_name text, email text, phone text, location text,
             meeting_type text, preferred_language text, enquiry_type text,
             enquiry_type_display text, service_type text, specific_service text,
             enquiry_details text, appointment_date date, appointment_time time,
             appointment_datetime timestamptz, duration_minutes integer, status text,
             status_display text, is_paid boolean, amount numeric, discount_amount numeric,
             final_amount numeric, promo_code text, assigned_admin jsonb, payment jsonb,
             admin_notes text, client_notes text, confirmed_at timestamptz,
             cancelled_at timestamptz, cancellation_reason text, created_at timestamptz,
             updated_at timestamptz)
     WHERE r.id IS NOT NULL
     ORDER BY r.id, r.updated_at DESC NULLS LAST
  ), fresh AS MATERIALIZED (
    -- the rows new to crm.appointments, with the contact their email has
    SELECT s.id, lower(s.email) AS email_key,
           (SELECT c.id FROM crm.contacts c WHERE lower(c.email) = lower(s.email)) AS contact_id
      FROM src s
     WHERE (SELECT x.id FROM crm.appointments x
             WHERE x.server_name = p_server AND x.external_id = s.id) IS NULL
  ), fresh_contacts AS MATERIALIZED (
    -- one new id per email without a contact, shared by its appointments; a
    -- map, not a table to join: the planner sees one row in every CTE above
    -- and would join them in a nested loop, quadratic in the rows
    SELECT coalesce(jsonb_object_agg(e.email_key, nextval('crm.contacts_id_seq')), '{}') AS ids
      FROM (SELECT DISTINCT f.email_key FROM fresh f
             WHERE f.email_key IS NOT NULL AND f.contact_id IS NULL) e
  ), links AS MATERIALIZED (
    SELECT f.id,
           coalesce(f.contact_id, ((SELECT ids FROM fresh_contacts) ->> f.email_key)::bigint) AS contact_id,
           nextval('crm.leads_id_seq') AS lead_id
      FROM fresh f
  ), rows AS (
    SELECT p_server AS server_name, s.id AS external_id, s.full_name, s.email, s.phone,
           s.appointment_datetime, s.appointment_date, s.appointment_time, s.duration_minutes,
           s.location, s.meeting_type, s.preferred_language, s.enquiry_type,
           s.enquiry_type_display, s.service_type, s.specific_service, s.enquiry_details,
           s.status, s.status_display, s.confirmed_at, s.cancelled_at, s.cancellation_reason,
           s.is_paid, s.amount, s.discount_amount, s.final_amount, s.promo_code,
           (s.payment->>'id')::bigint AS payment_id, s.payment->>'status' AS payment_status,
           s.payment->>'payment_method' AS payment_method,
           (s.payment->>'paid_at')::timestamptz AS paid_at,
           (s.assigned_admin->>'id')::bigint AS assigned_admin_id,
           s.assigned_admin->>'name' AS assigned_admin_name,
           s.assigned_admin->>'email' AS assigned_admin_email,
           s.admin_notes, s.client_notes, s.created_at, s.updated_at,
           k.contact_id, k.lead_id,
           CASE WHEN k.id IS NOT NULL AND s.is_paid THEN nextval('crm.deals_id_seq') END
      FROM src s LEFT JOIN links k ON k.id = s.id
  ), up AS (
    INSERT INTO crm.appointments AS a (
           server_name, external_id, client_name, client_email, client_phone,
           appointment_datetime, appointment_date, appointment_time, duration_minutes,
           location, meeting_type, preferred_language, enquiry_type, enquiry_type_display,
           service_type, specific_service, enquiry_details, status, status_display,
           confirmed_at, cancelled_at, cancellation_reason, is_paid, amount, discount_amount,
           final_amount, promo_code, payment_id, payment_status, payment_method, paid_at,
           assigned_admin_id, assigned_admin_name, assigned_admin_email, admin_notes,
           client_notes, source_created_at, source_updated_at,
           crm_contact_id, crm_lead_id, crm_deal_id)
    SELECT * FROM rows
    ON CONFLICT (server_name, external_id) DO UPDATE SET
           client_name = EXCLUDED.client_name, client_email = EXCLUDED.client_email,
           client_phone = EXCLUDED.client_phone,
           appointment_datetime = EXCLUDED.appointment_datetime,
           appointment_date = EXCLUDED.appointment_date,
           appointment_time = EXCLUDED.appointment_time,
           duration_minutes = EXCLUDED.duration_minutes, location = EXCLUDED.location,
           meeting_type = EXCLUDED.meeting_type,
           preferred_language = EXCLUDED.preferred_language,
           enquiry_type = EXCLUDED.enquiry_type,
           enquiry_type_display = EXCLUDED.enquiry_type_display,
           service_type = EXCLUDED.service_type, specific_service = EXCLUDED.specific_service,
           enquiry_details = EXCLUDED.enquiry_details, status = EXCLUDED.status,
           status_display = EXCLUDED.status_display, confirmed_at = EXCLUDED.confirmed_at,
           cancelled_at = EXCLUDED.cancelled_at,
           cancellation_reason = EXCLUDED.cancellation_reason, is_paid = EXCLUDED.is_paid,
           amount = EXCLUDED.amount, discount_amount = EXCLUDED.discount_amount,
           final_amount = EXCLUDED.final_amount, promo_code = EXCLUDED.promo_code,
           payment_id = EXCLUDED.payment_id, payment_status = EXCLUDED.payment_status,
           payment_method = EXCLUDED.payment_method, paid_at = EXCLUDED.paid_at,
           assigned_admin_id = EXCLUDED.assigned_admin_id,
           assigned_admin_name = EXCLUDED.assigned_admin_name,
           assigned_admin_email = EXCLUDED.assigned_admin_email,
           admin_notes = EXCLUDED.admin_notes, client_notes = EXCLUDED.client_notes,
           source_created_at = EXCLUDED.source_created_at,
           source_updated_at = EXCLUDED.source_updated_at,
           sync_status = 'synced', sync_error = NULL,
           last_synced_at = now(), updated_at = now()
     -- an older version never overwrites a newer one, unless the newer one
     -- is gone remotely (missing_remote): a row restored from a backup is back
     WHERE (a.source_updated_at IS NULL OR EXCLUDED.source_updated_at IS NULL
            OR EXCLUDED.source_updated_at >= a.source_updated_at
            OR a.sync_status = 'missing_remote')
       AND ((a.client_name, a.client_email, a.client_phone, a.appointment_datetime,
             a.appointment_date, a.appointment_time, a.duration_minutes, a.location,
             a.meeting_type, a.preferred_language, a.enquiry_type, a.enquiry_type_display,
             a.service_type, a.specific_service, a.enquiry_details, a.status,
             a.status_display, a.confirmed_at, a.cancelled_at, a.cancellation_reason,
             a.is_paid, a.amount, a.discount_amount, a.final_amount, a.promo_code,
             a.payment_id, a.payment_status, a.payment_method, a.paid_at,
             a.assigned_admin_id, a.assigned_admin_name, a.assigned_admin_email,
             a.admin_notes, a.client_notes, a.source_created_at, a.source_updated_at,
             a.sync_status)
            IS DISTINCT FROM
            (EXCLUDED.client_name, EXCLUDED.client_email, EXCLUDED.client_phone,
             EXCLUDED.appointment_datetime, EXCLUDED.appointment_date,
             EXCLUDED.appointment_time, EXCLUDED.duration_minutes, EXCLUDED.location,
             EXCLUDED.meeting_type, EXCLUDED.preferred_language, EXCLUDED.enquiry_type,
             EXCLUDED.enquiry_type_display, EXCLUDED.service_type,
             EXCLUDED.specific_service, EXCLUDED.enquiry_details, EXCLUDED.status,
             EXCLUDED.status_display, EXCLUDED.confirmed_at, EXCLUDED.cancelled_at,
             EXCLUDED.cancellation_reason, EXCLUDED.is_paid, EXCLUDED.amount,
             EXCLUDED.discount_amount, EXCLUDED.final_amount, EXCLUDED.promo_code,
             EXCLUDED.payment_id, EXCLUDED.payment_status, EXCLUDED.payment_method,
             EXCLUDED.paid_at, EXCLUDED.assigned_admin_id, EXCLUDED.assigned_admin_name,
             EXCLUDED.assigned_admin_email, EXCLUDED.admin_notes, EXCLUDED.client_notes,
             EXCLUDED.source_created_at, EXCLUDED.source_updated_at, 'synced'))
    RETURNING (xmax = 0) AS inserted
  )
  SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted)
    INTO created, updated FROM up;
END $$;

-- A row's id when the listing shows a usable one: a JSON number of up to 18
-- digits.  Inlined where it is used (no SET clause for that reason; its
-- operators are pg_catalog's, searched first).
CREATE FUNCTION crm._listed_id(e jsonb) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE WHEN jsonb_typeof(e->'id') = 'number' AND e->>'id' ~ '^[0-9]{1,18}$'
                  THEN (e->>'id')::bigint END $$;

-- The rows of pages (JSON arrays), in order.
CREATE FUNCTION crm._page_rows(p_pages jsonb[]) RETURNS SETOF jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT e FROM unnest(p_pages) AS p(page), jsonb_array_elements(p.page) AS e $$;

-- Note a row that could not be stored or read; one already failing counts a
-- retry, and is a dead letter (no longer retried) after p_max_retries.  Only
-- errors of the row itself count (bad data, a constraint, the remote's answer
-- for it); a missing right, a lock timeout or a deadlock fails every row
-- alike and passes once fixed, so it must not use up their retries.
CREATE FUNCTION crm._record_sync_error(p_server text, p_log_id bigint, p_ext_id bigint,
                                       p_type text, p_message text, p_data jsonb,
                                       p_max_retries integer)
RETURNS void LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  -- data exceptions, integrity violations, the remote's errors, a too-big answer
  counts integer := (left(p_type, 2) IN ('22', '23', 'HV', '54'))::integer;
BEGIN
  INSERT INTO crm.sync_errors AS x (sync_log_id, server_name, external_appointment_id,
                                    error_type, error_message, error_data)
  VALUES (p_log_id, p_server, p_ext_id, p_type, p_message, p_data)
  ON CONFLICT (server_name, external_appointment_id) WHERE resolved_at IS NULL
  DO UPDATE SET sync_log_id = EXCLUDED.sync_log_id, error_type = EXCLUDED.error_type,
                error_message = EXCLUDED.error_message,
                error_data = coalesce(EXCLUDED.error_data, x.error_data),
                retry_count = x.retry_count + counts,
                dead_letter = x.retry_count + counts >= p_max_retries,
                updated_at = now();
END $$;

-- Store some pages: set-wise, and row by row only when the set fails, so one
-- bad row lands in crm.sync_errors (with its JSON and the error) and the rest
-- is stored.  Rows stored resolve their open errors.
CREATE FUNCTION crm._sync_pages(p_server text, p_log_id bigint, p_pages jsonb[],
                               p_max_retries integer,
                               OUT created integer, OUT updated integer,
                               OUT unchanged integer, OUT failed integer,
                               OUT failed_without_id integer, OUT max_updated timestamptz,
                               OUT duplicates integer, OUT changed_repeats integer)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  elem jsonb;
  r record;
  stored bigint[] := '{}';
  listed bigint[];
  versions text[];
  nrows integer;
  new_ids integer;
  ext_id bigint;
  msg text;
  detail text;
  state text;
BEGIN
  created := 0; updated := 0; failed := 0; failed_without_id := 0;
  BEGIN
    -- One pass over the rows: their number, the ids the listing showed with
    -- their versions, and, for a batch stored whole, its ids and newest
    -- update.  A row whose id or updated_at does not parse fails the batch
    -- here as in the store.
    SELECT count(*),
           coalesce(array_agg(x.id) FILTER (WHERE x.id IS NOT NULL), '{}'),
           coalesce(array_agg(e->>'updated_at') FILTER (WHERE x.id IS NOT NULL), '{}'),
           max((e->>'updated_at')::timestamptz), array_agg((e->>'id')::bigint)
      INTO nrows, listed, versions, max_updated, stored
      -- OFFSET 0: _listed_id once a row, not once a use (its regex is a
      -- third of this statement)
      FROM crm._page_rows(p_pages) e, LATERAL (SELECT crm._listed_id(e) AS id OFFSET 0) x;
    SELECT * INTO r FROM crm._store_rows(p_server, p_pages);
    created := r.created; updated := r.updated;
  EXCEPTION WHEN others THEN
    -- the ids the listing showed, whether they can be stored or not
    SELECT count(*),
           coalesce(array_agg(x.id) FILTER (WHERE x.id IS NOT NULL), '{}'),
           coalesce(array_agg(e->>'updated_at') FILTER (WHERE x.id IS NOT NULL), '{}')
      INTO nrows, listed, versions
      FROM crm._page_rows(p_pages) e, LATERAL (SELECT crm._listed_id(e) AS id OFFSET 0) x;
    max_updated := NULL;
    stored := '{}';
    FOR elem IN SELECT e FROM crm._page_rows(p_pages) e LOOP
      BEGIN
        SELECT * INTO r FROM crm._store_rows(p_server, ARRAY[jsonb_build_array(elem)]);
        created := created + r.created; updated := updated + r.updated;
        stored := stored || (elem->>'id')::bigint;
        -- a row that failed does not move the cursor: it is retried by id
        max_updated := greatest(max_updated, (elem->>'updated_at')::timestamptz);
      EXCEPTION WHEN others THEN
        GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL, state = RETURNED_SQLSTATE;
        failed := failed + 1;
        ext_id := crm._listed_id(elem);
        IF ext_id IS NULL THEN
          failed_without_id := failed_without_id + 1;
        END IF;
        PERFORM crm._record_sync_error(p_server, p_log_id, ext_id, state,
                                       msg || coalesce(E'\n' || detail, ''), elem, p_max_retries);
      END;
    END LOOP;
  END;
  unchanged := nrows - created - updated - failed;
  UPDATE crm.sync_errors SET resolved_at = now(), updated_at = now()
   WHERE server_name = p_server AND resolved_at IS NULL
     AND external_appointment_id = ANY (stored);
  -- The ids this walk has seen.  One seen again unchanged only shows rows
  -- shifted forward; one seen again changed moved under the walk, and may
  -- have pushed another past it (see src/sync.c).
  duplicates := 0;
  changed_repeats := 0;
  IF to_regclass('pg_temp.crm_seen_ids') IS NOT NULL THEN
    INSERT INTO crm_seen_ids
    SELECT DISTINCT ON (l.id) l.id, l.version FROM unnest(listed, versions) AS l(id, version)
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS new_ids = ROW_COUNT;
    duplicates := cardinality(listed) - new_ids;
    -- compared with the version first seen (kept above, for an id new here)
    IF duplicates > 0 THEN
      SELECT count(DISTINCT l.id) INTO changed_repeats
        FROM unnest(listed, versions) AS l(id, version) JOIN crm_seen_ids s ON s.id = l.id
       WHERE s.version IS DISTINCT FROM l.version;
    END IF;
  END IF;
END $$;

-- Is this run still going?  'running' alone is not enough: its process may
-- have died with the cluster.
CREATE FUNCTION crm._sync_alive(run crm.sync_log) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT run.status = 'running'
     AND EXISTS (SELECT 1 FROM pg_stat_activity a
                  WHERE a.pid = run.worker_pid AND a.backend_type = 'crm_fdw sync')
$$;

-- What each server's sync is doing and has done.
CREATE VIEW crm.sync_status AS
SELECT s.server_name,
       s.enabled,
       s.sync_cursor,
       s.last_full_sync,
       l.id AS last_sync_id,
       l.sync_type AS last_sync_type,
       -- a run left 'running' by a process that died (crash, immediate
       -- stop) is closed as failed by the next sync; until then:
       CASE WHEN l.status = 'running' THEN 'interrupted' ELSE l.status END AS last_status,
       l.sync_started_at AS last_started_at,
       l.sync_completed_at AS last_completed_at,
       l.records_fetched AS last_fetched,
       l.records_created AS last_created,
       l.records_updated AS last_updated,
       l.records_failed AS last_failed,
       l.error_message AS last_error,
       (SELECT count(*) FROM crm.appointments a WHERE a.server_name = s.server_name) AS appointments,
       (SELECT count(*) FROM crm.appointments a
         WHERE a.server_name = s.server_name AND a.sync_status = 'missing_remote') AS missing_remote,
       (SELECT count(*) FROM crm.sync_errors e
         WHERE e.server_name = s.server_name AND e.resolved_at IS NULL AND NOT e.dead_letter) AS failing_rows,
       (SELECT count(*) FROM crm.sync_errors e
         WHERE e.server_name = s.server_name AND e.resolved_at IS NULL AND e.dead_letter) AS dead_letters,
       r.id AS running_sync_id,
       r.pages_done AS running_pages_done,
       r.pages_total AS running_pages_total,
       r.records_fetched AS running_rows,
       CASE WHEN r.id IS NOT NULL THEN
         round(r.records_fetched / greatest(extract(epoch FROM clock_timestamp() - r.sync_started_at), 0.001))
       END AS running_rows_per_second
  FROM crm.sync_state s
  LEFT JOIN LATERAL (SELECT * FROM crm.sync_log x WHERE x.server_name = s.server_name
                       AND NOT crm._sync_alive(x) ORDER BY x.id DESC LIMIT 1) l ON true
  LEFT JOIN LATERAL (SELECT * FROM crm.sync_log x WHERE x.server_name = s.server_name
                       AND crm._sync_alive(x) ORDER BY x.id DESC LIMIT 1) r ON true;

-- ===================================================================
-- Running syncs
-- ===================================================================
CREATE FUNCTION crm_sync_now(server name DEFAULT NULL)
RETURNS SETOF crm.sync_log
AS 'MODULE_PATHNAME', 'crm_sync_now'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION crm_sync_now(name) IS
  'incremental sync of a crm_fdw server (NULL: every enabled server) in a background worker; returns its crm.sync_log rows';

CREATE FUNCTION crm_sync_full(server name DEFAULT NULL)
RETURNS SETOF crm.sync_log
AS 'MODULE_PATHNAME', 'crm_sync_full'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION crm_sync_full(name) IS
  'full reconciliation of a crm_fdw server: re-reads everything and marks rows the remote no longer lists';

-- Turn scheduled syncs of a server on or off (creating its state row).
CREATE FUNCTION crm_sync_enable(server name, enabled boolean DEFAULT true)
RETURNS void LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
  INSERT INTO crm.sync_state AS s (server_name, enabled) VALUES (server, enabled)
  ON CONFLICT (server_name) DO UPDATE SET enabled = EXCLUDED.enabled, updated_at = now();
$$;

-- Syncs run as the calling role with its user mapping: grant these to the
-- roles that may sync, together with the rights on schema crm.
REVOKE ALL ON FUNCTION crm_sync_now(name), crm_sync_full(name), crm_sync_enable(name, boolean)
  FROM PUBLIC;
