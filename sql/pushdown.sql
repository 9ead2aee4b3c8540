--
-- pushdown: which WHERE clauses become API parameters.  For each case the
-- mock's request log shows exactly what was sent, and the rows must equal the
-- same query over local_copy (every pushed filter is also checked locally).
--
CREATE FUNCTION pushdown(filter text, tail text DEFAULT '',
                         from_table regclass DEFAULT 'remote.appointments')
RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
  remote_ids bigint[];
  local_ids bigint[];
BEGIN
  PERFORM mock.clear_log();
  EXECUTE format('SELECT coalesce(array_agg(id ORDER BY id), ''{}'') FROM (SELECT id FROM %s WHERE %s %s) s', from_table, filter, tail)
    INTO remote_ids;
  RETURN QUERY SELECT 'GET ' || path || CASE WHEN query <> '' THEN '?' || query ELSE '' END
               FROM mock.requests();
  IF tail = '' THEN
    EXECUTE format('SELECT coalesce(array_agg(id ORDER BY id), ''{}'') FROM local_copy WHERE %s', filter)
      INTO local_ids;
    RETURN NEXT format('rows: %s, same as local: %s', cardinality(remote_ids), remote_ids = local_ids);
  ELSE
    RETURN NEXT format('rows: %s', cardinality(remote_ids));
  END IF;
END $$;

-- enum filters: one value is one parameter; an IN list is checked locally only
-- (a request per value would miss a row whose value changes between them)
SELECT pushdown($$status = 'confirmed'$$);
SELECT pushdown($$status IN ('pending', 'cancelled')$$);
SELECT pushdown($$status = ANY (ARRAY['no_show'])$$);
SELECT pushdown($$location = 'adelaide' AND enquiry_type = 'tr'$$);
SELECT pushdown($$location IN ('adelaide', 'melbourne') AND enquiry_type IN ('tr', 'education')$$);
-- a value outside the documented vocabulary is filtered locally only
SELECT pushdown($$status = 'Confirmed'$$);
-- contradictions need no request at all
SELECT pushdown($$status = 'confirmed' AND status = 'pending'$$);
SELECT pushdown($$appointment_date > '2025-01-01' AND appointment_date < '2024-01-01'$$);

-- dates: start_date / end_date, inclusive
SELECT pushdown($$appointment_date BETWEEN '2024-11-01' AND '2024-11-30'$$);
SELECT pushdown($$appointment_date > '2025-12-01'$$);
SELECT pushdown($$appointment_date < '2024-01-10'$$);
SELECT pushdown($$appointment_date = '2024-06-03'$$);
-- appointment_datetime is sent as nothing: start_date/end_date filter on
-- appointment_date, and a row may have one without the other
SELECT pushdown($$appointment_datetime >= '2025-06-01 00:00+00' AND appointment_datetime < '2025-06-08 00:00+00'$$);

-- created/updated: one second earlier, so strict and inclusive remotes both work
SELECT pushdown($$updated_at > '2025-06-01 00:00:00+00'$$);
SELECT pushdown($$created_at >= '2025-10-01 12:30:00.5+00' AND status = 'completed'$$);

-- id: GET /appointments/{id}; a missing one is no row
SELECT pushdown($$id = 42$$);
SELECT pushdown($$id IN (3, 1, 2, 3, 100000)$$);
SELECT pushdown($$id = 100000$$);

-- not pushable: OR, functions of the column
SELECT pushdown($$status = 'confirmed' OR location = 'melbourne'$$);
SELECT pushdown($$lower(status) = 'confirmed' AND appointment_date >= '2025-12-20'$$);

-- LIMIT with every clause pushed: a smaller page
SELECT pushdown($$status = 'confirmed'$$, 'LIMIT 5');
-- LIMIT with a local-only clause: full pages
SELECT pushdown($$lower(status) = 'confirmed'$$, 'LIMIT 5');

-- a cast that PostgreSQL compares as another type is no id lookup (id::oid of
-- an integer id compares as oid): filtered locally, no crash
CREATE FOREIGN TABLE int_ids (id integer, status text) SERVER mockapi;
SELECT pushdown($$id::oid = 42$$, from_table => 'int_ids');
SELECT pushdown($$id::oid = ANY ('{4294967295, 42}')$$, from_table => 'int_ids');

-- EXPLAIN shows the requests and sends none
SELECT mock.clear_log();
EXPLAIN (VERBOSE, COSTS OFF)
  SELECT id, full_name FROM remote.appointments
  WHERE status = 'confirmed' AND appointment_date BETWEEN '2024-11-01' AND '2024-11-30';
EXPLAIN (VERBOSE, COSTS OFF) SELECT id, status FROM remote.appointments WHERE id = 42;
EXPLAIN (COSTS OFF) SELECT * FROM remote.appointments WHERE status IN ('pending', 'confirmed');
-- a stable expression is evaluated at execution; EXPLAIN shows where it goes
EXPLAIN (COSTS OFF)
  SELECT * FROM remote.appointments WHERE appointment_date >= to_date('2025-12-01', 'YYYY-MM-DD');
SELECT count(*) AS requests_sent_by_explain FROM mock.requests();

SELECT pushdown($$appointment_date >= to_date('2025-12-01', 'YYYY-MM-DD')$$);

-- EXPLAIN ANALYZE adds what was sent and received
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
  SELECT * FROM remote.appointments WHERE id IN (1, 2);

-- prepared statements: custom plans, then generic plans with $1
PREPARE by_status(text) AS SELECT count(*) FROM remote.appointments WHERE status = $1;
SELECT mock.clear_log();
EXECUTE by_status('pending');
EXECUTE by_status('confirmed');
EXECUTE by_status('completed');
EXECUTE by_status('cancelled');
EXECUTE by_status('no_show');
EXECUTE by_status('in_progress');
EXECUTE by_status('pending');
SELECT query FROM mock.requests();
SET plan_cache_mode = force_generic_plan;
EXPLAIN (COSTS OFF) EXECUTE by_status('pending');
SELECT mock.clear_log();
EXECUTE by_status('confirmed');
SELECT (SELECT count(*) FROM local_copy WHERE status = 'confirmed') AS local_confirmed;
SELECT query FROM mock.requests();
RESET plan_cache_mode;

-- a join on id: a parameterized scan, one GET per outer row
CREATE TABLE wanted (appointment_id bigint, note text);
INSERT INTO wanted VALUES (7, 'a'), (19, 'b'), (100000, 'gone'), (7, 'again');
ANALYZE wanted;
EXPLAIN (COSTS OFF)
  SELECT w.note, a.id, a.full_name FROM wanted w JOIN remote.appointments a ON a.id = w.appointment_id;
SELECT mock.clear_log();
SELECT w.note, a.id, a.full_name = (SELECT l.full_name FROM local_copy l WHERE l.id = a.id) AS same_name
  FROM wanted w JOIN remote.appointments a ON a.id = w.appointment_id
  ORDER BY w.note;
SELECT path FROM mock.requests();

-- columns of domain types are pushed down as their base types are, and
-- checked locally all the same; the domain's CHECK applies to every row read
CREATE DOMAIN weekday AS date CHECK (extract(isodow FROM VALUE) < 6);
CREATE DOMAIN appointment_status AS varchar(20);
CREATE DOMAIN appointment_id AS bigint CHECK (VALUE > 0);
CREATE FOREIGN TABLE weekday_appointments (
  id appointment_id, full_name text, appointment_date weekday, status appointment_status)
  SERVER mockapi;
SELECT mock.clear_log();
EXPLAIN (VERBOSE, COSTS OFF)
  SELECT id, full_name FROM weekday_appointments
  WHERE status = 'confirmed' AND appointment_date BETWEEN '2024-11-11' AND '2024-11-15';
SELECT count(*) AS requests_sent_by_explain FROM mock.requests();
SELECT pushdown($$appointment_date BETWEEN '2024-11-11' AND '2024-11-15'$$, from_table => 'weekday_appointments');
SELECT pushdown($$status IN ('pending', 'confirmed') AND appointment_date > '2024-11-10' AND appointment_date < '2024-11-16'$$,
                from_table => 'weekday_appointments');
SELECT pushdown($$id IN (22, 44)$$, from_table => 'weekday_appointments');
-- a weekend in the range: the remote sends a row the domain refuses
SELECT count(*) FROM weekday_appointments WHERE appointment_date BETWEEN '2024-11-11' AND '2024-11-17';
-- a join on an id of a domain over bigint: one GET per outer row
EXPLAIN (COSTS OFF)
  SELECT w.note, a.id FROM wanted w JOIN weekday_appointments a ON a.id = w.appointment_id;
SELECT mock.clear_log();
SELECT w.note, a.id FROM wanted w JOIN weekday_appointments a ON a.id = w.appointment_id
 ORDER BY w.note;
SELECT path FROM mock.requests();
