--
-- setup: the server, user mapping and imported tables every other test uses,
-- and SQL helpers that drive the mock API (test/mock) through its control API.
-- test/run-tests passes the mock's address in the environment.
--
\getenv mock_base CRM_MOCK_BASE
\getenv mock_url CRM_MOCK_URL
\getenv mock_token CRM_MOCK_TOKEN
SET client_min_messages = warning;

CREATE SCHEMA mock;
CREATE TABLE mock.settings (base text NOT NULL);
INSERT INTO mock.settings VALUES (:'mock_base');

-- Run curl against the mock's control API and return its JSON answer.
CREATE FUNCTION mock.call(method text, path text, body text DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  cmd text;
  result text;
BEGIN
  IF to_regclass('pg_temp.mock_out') IS NULL THEN
    CREATE TEMP TABLE mock_out (line text);
  END IF;
  TRUNCATE mock_out;
  cmd := format('curl -sS -X %s -H ''Content-Type: application/json'' ', method);
  IF body IS NOT NULL THEN
    cmd := cmd || '--data-binary ' || quote_literal(body) || ' ';
  END IF;
  cmd := cmd || quote_literal((SELECT base FROM mock.settings) || path) || ' | jq -c .';
  -- Raw lines: a CSV format whose quote and delimiter never occur in JSON text.
  EXECUTE format('COPY mock_out FROM PROGRAM %L WITH (FORMAT csv, QUOTE %L, DELIMITER %L)',
                 cmd, chr(1), chr(2));
  SELECT string_agg(line, E'\n') INTO result FROM mock_out;
  RETURN result::jsonb;
END $$;

CREATE FUNCTION mock.reset() RETURNS void LANGUAGE sql
  AS $$ SELECT mock.call('POST', '/_mock/reset', '{}') $$;
CREATE FUNCTION mock.config(settings jsonb) RETURNS void LANGUAGE sql
  AS $$ SELECT mock.call('POST', '/_mock/config', settings::text) $$;
CREATE FUNCTION mock.clear_log() RETURNS void LANGUAGE sql
  AS $$ SELECT mock.call('DELETE', '/_mock/log') $$;
CREATE FUNCTION mock.mutate(op jsonb) RETURNS jsonb LANGUAGE sql
  AS $$ SELECT mock.call('POST', '/_mock/mutate', op::text) $$;

-- The API requests the mock received since the log was cleared, in order.
CREATE FUNCTION mock.requests()
RETURNS TABLE (seq int, path text, query text, status text, auth text)
LANGUAGE sql AS $$
  SELECT (r->>'seq')::int, r->>'path', coalesce(r->>'raw_query', ''), r->>'status', r->>'auth'
  FROM jsonb_array_elements(mock.call('GET', '/_mock/log')) AS r
  ORDER BY 1
$$;

-- The mock's whole data set, for comparing query results with a local copy.
CREATE FUNCTION mock.data() RETURNS jsonb LANGUAGE sql
  AS $$ SELECT mock.call('GET', '/_mock/data') $$;

CREATE SERVER mockapi FOREIGN DATA WRAPPER crm_fdw
  OPTIONS (url :'mock_url', rate_limit_per_minute '0', retry_base_ms '10', timeout_ms '5000');
CREATE USER MAPPING FOR CURRENT_USER SERVER mockapi OPTIONS (token :'mock_token');
CREATE SCHEMA remote;
IMPORT FOREIGN SCHEMA api FROM SERVER mockapi INTO remote;

SELECT mock.reset();

-- A local copy of the remote data: what every query must return.
CREATE TABLE local_copy AS
  SELECT * FROM jsonb_populate_recordset(NULL::remote.appointments, mock.data());
UPDATE local_copy l SET
  assigned_admin_id = (assigned_admin->>'id')::bigint,
  assigned_admin_name = assigned_admin->>'name',
  assigned_admin_email = assigned_admin->>'email',
  payment_id = (payment->>'id')::bigint,
  payment_status = payment->>'status',
  payment_amount = (payment->>'amount')::numeric,
  payment_method = payment->>'payment_method',
  paid_at = (payment->>'paid_at')::timestamptz;
RESET client_min_messages;

SELECT count(*) AS local_rows FROM local_copy;
