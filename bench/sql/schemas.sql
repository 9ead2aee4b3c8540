-- Tables of the two alternatives crm_fdw is measured against.  Loaded by
-- bench/run after CREATE EXTENSION crm_fdw, so crm.* exists to copy from.
--
-- Both copy crm.appointments with LIKE ... INCLUDING ALL (columns, defaults,
-- CHECK constraints, the unique (server_name, external_id) and every index),
-- but not its triggers: crm.appointments' statement triggers would create the
-- contacts, leads and deals themselves, and each alternative is measured doing
-- that work its own way.

-- ---------------------------------------------------------------------------
-- ref: the guide's "Example 1: Node.js Backend" (bench/reference_sync.js).
-- crm_appointments, crm_sync_log and crm_sync_errors as the guide defines them
-- (here: the same columns as crm.*); contacts, leads and deals with exactly the
-- fields the guide's createCRMRecords/updateCRMRecords write.  The guide leaves
-- those three tables to "your CRM system"; the index on lower(email) stands in
-- for MySQL's case-insensitive default collation, which the guide's
-- `WHERE email = ?` relies on, and keeps its per-row lookup from being a scan.
-- ---------------------------------------------------------------------------
DROP SCHEMA IF EXISTS ref CASCADE;
CREATE SCHEMA ref;
CREATE TABLE ref.appointments (LIKE crm.appointments INCLUDING ALL);
CREATE TABLE ref.contacts (
  id                  bigserial PRIMARY KEY,
  name                text,
  email               text,          -- the guide inserts NULL for a row without email
  phone               text,
  preferred_language  text,
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ref_contacts_email_idx ON ref.contacts (lower(email));
CREATE TABLE ref.leads (
  id            bigserial PRIMARY KEY,
  contact_id    bigint,
  source        text,
  enquiry_type  text,
  service_type  text,
  details       text,
  status        text,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ref_leads_contact_idx ON ref.leads (contact_id);
CREATE TABLE ref.deals (
  id                   bigserial PRIMARY KEY,
  contact_id           bigint,
  lead_id              bigint,
  title                text,
  amount               numeric(10,2),
  stage                text,
  expected_close_date  timestamptz,
  created_at           timestamptz NOT NULL DEFAULT now(),
  updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ref_deals_contact_idx ON ref.deals (contact_id);
CREATE TABLE ref.sync_log (
  id                 bigserial PRIMARY KEY,
  sync_type          text NOT NULL,
  sync_started_at    timestamptz NOT NULL,
  sync_completed_at  timestamptz,
  records_fetched    integer DEFAULT 0,
  records_created    integer DEFAULT 0,
  records_updated    integer DEFAULT 0,
  records_failed     integer DEFAULT 0,
  status             text NOT NULL,
  error_message      text,
  created_at         timestamptz DEFAULT now()
);
CREATE TABLE ref.sync_errors (
  id                       bigserial PRIMARY KEY,
  sync_log_id              bigint REFERENCES ref.sync_log (id),
  external_appointment_id  bigint,
  error_type               text,
  error_message            text,
  error_data               jsonb,
  retry_count              integer DEFAULT 0,
  resolved_at              timestamptz,
  created_at               timestamptz DEFAULT now()
);

-- ---------------------------------------------------------------------------
-- peer: the batched SQL peer (bench/batched_peer.sh).  The same tables,
-- constraints and foreign keys as crm.*, so its set-wise statements pay for
-- the same index and constraint maintenance as crm_fdw's.
-- ---------------------------------------------------------------------------
DROP SCHEMA IF EXISTS peer CASCADE;
CREATE SCHEMA peer;
CREATE TABLE peer.appointments (LIKE crm.appointments INCLUDING ALL);
CREATE TABLE peer.contacts (LIKE crm.contacts INCLUDING ALL);
CREATE TABLE peer.leads (LIKE crm.leads INCLUDING ALL,
  FOREIGN KEY (appointment_id) REFERENCES peer.appointments (id) ON DELETE CASCADE,
  FOREIGN KEY (contact_id) REFERENCES peer.contacts (id));
CREATE TABLE peer.deals (LIKE crm.deals INCLUDING ALL,
  FOREIGN KEY (appointment_id) REFERENCES peer.appointments (id) ON DELETE CASCADE,
  FOREIGN KEY (contact_id) REFERENCES peer.contacts (id),
  FOREIGN KEY (lead_id) REFERENCES peer.leads (id));

-- LIKE copies each id's DEFAULT nextval('crm.…_id_seq'): give every copied
-- table a sequence of its own instead of sharing crm's.
DO $$
DECLARE
  t regclass;
BEGIN
  FOREACH t IN ARRAY ARRAY['ref.appointments', 'peer.appointments', 'peer.contacts',
                           'peer.leads', 'peer.deals']::regclass[] LOOP
    EXECUTE format('CREATE SEQUENCE %s_id_seq OWNED BY %s.id', t, t);
    EXECUTE format('ALTER TABLE %s ALTER id SET DEFAULT nextval(%L)', t, t || '_id_seq');
  END LOOP;
END $$;
