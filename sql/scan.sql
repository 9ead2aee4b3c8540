--
-- scan: every resource, every column type, the remote's format variants.
--
-- A full scan equals the local copy, column for column.
CREATE FUNCTION same_as_local(tab text DEFAULT 'remote.appointments', cols text DEFAULT '*')
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  missing bigint;
  extra bigint;
  n bigint;
BEGIN
  EXECUTE format('SELECT count(*) FROM %s', tab) INTO n;
  EXECUTE format('SELECT count(*) FROM (SELECT %2$s FROM local_copy EXCEPT ALL SELECT %2$s FROM %1$s) s', tab, cols) INTO missing;
  EXECUTE format('SELECT count(*) FROM (SELECT %2$s FROM %1$s EXCEPT ALL SELECT %2$s FROM local_copy) s', tab, cols) INTO extra;
  RETURN format('rows %s, missing %s, extra %s', n, missing, extra);
END $$;

SELECT mock.clear_log();
SELECT same_as_local();
SELECT count(*) AS requests, min(query), max(query) FROM mock.requests();

-- unicode, quotes, newlines survive
SELECT id, full_name, email FROM remote.appointments WHERE id IN (1, 2, 3, 4, 5) ORDER BY id;
SELECT count(*) FILTER (WHERE enquiry_details LIKE '%' || E'\n' || '%') > 0 AS has_newlines,
       count(*) FILTER (WHERE enquiry_details LIKE '%"%') > 0 AS has_quotes,
       count(DISTINCT lower(email)) < count(DISTINCT email) AS emails_differ_in_case
  FROM remote.appointments;

-- nested objects: as jsonb and flattened through json_path
SELECT id, payment->>'status' AS from_jsonb, payment_status, payment_amount, paid_at IS NOT NULL AS has_paid_at
  FROM remote.appointments WHERE is_paid ORDER BY id LIMIT 3;
SELECT count(*) FROM remote.appointments WHERE payment IS NULL AND payment_status IS NOT NULL;

-- count(*) converts no column at all
SELECT count(*) FROM remote.appointments;

-- the remote's format variants change no typed column (jsonb keeps what was sent)
CREATE VIEW typed_columns AS
  SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) AS cols FROM pg_attribute
  WHERE attrelid = 'remote.appointments'::regclass AND attnum > 0 AND atttypid <> 'jsonb'::regtype;
SELECT mock.config('{"money_as_number": true, "datetime_format": "offset", "extra_fields": true, "order": "updated_asc"}');
SELECT same_as_local('remote.appointments', (SELECT cols FROM typed_columns));
SELECT mock.config('{"datetime_format": "plain_z", "order": "datetime_desc"}');
SELECT same_as_local('remote.appointments', (SELECT cols FROM typed_columns));
SELECT mock.reset();

-- a column may take any type with a text input function
CREATE FOREIGN TABLE typed (
  id numeric,
  full_name varchar(300),
  appointment_date text,
  appointment_time time,
  duration_minutes bigint,
  is_paid text,
  final_amount float8,
  admin_name text OPTIONS (json_path 'assigned_admin.name'),
  admin json OPTIONS (json_path 'assigned_admin'),
  missing_field text OPTIONS (json_path 'no.such.field')
) SERVER mockapi;
SELECT * FROM typed WHERE id IN (1, 2) ORDER BY id;
SELECT count(*) FROM typed t JOIN local_copy l ON l.id = t.id
  WHERE t.final_amount IS DISTINCT FROM l.final_amount::float8;

-- recent
SELECT mock.mutate('{"update": [5, 6, 7]}') IS NOT NULL AS mutated;
SELECT mock.clear_log();
SELECT array_agg(id ORDER BY id) FROM remote.appointments_recent;
SELECT path, query FROM mock.requests();
CREATE FOREIGN TABLE recent_5 (id bigint) SERVER mockapi OPTIONS (resource 'recent', minutes '5');
SELECT count(*) >= 3 AS at_least_three FROM recent_5;
SELECT mock.reset();

-- stats: period bounds are pushed down
SELECT mock.clear_log();
SELECT * FROM remote.appointment_stats WHERE period_start = '2024-11-01' AND period_end = '2024-11-30';
SELECT path, query FROM mock.requests();
SELECT count(*) AS total, count(*) FILTER (WHERE status = 'pending') AS pending,
       count(*) FILTER (WHERE is_paid) AS paid, sum(final_amount) FILTER (WHERE is_paid) AS revenue
  FROM local_copy WHERE appointment_date BETWEEN '2024-11-01' AND '2024-11-30';
SELECT count(*) FROM remote.appointment_stats;

-- export: CSV, with the same filters
SELECT same_as_local('remote.appointments_export',
  (SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute
    WHERE attrelid = 'remote.appointments_export'::regclass AND attnum > 0)) AS export_vs_local;
SELECT mock.clear_log();
SELECT count(*) = (SELECT count(*) FROM local_copy WHERE status = 'completed' AND location = 'melbourne') AS same_count
  FROM remote.appointments_export WHERE status = 'completed' AND location = 'melbourne';
SELECT path, query FROM mock.requests();
