--
-- errors: what the API can do wrong, and what the user sees.  A fault either
-- heals through retries (same rows as the local copy) or ends in a clear error;
-- never a short or wrong result.
--
\getenv mock_url CRM_MOCK_URL
\set VERBOSITY default
SELECT mock.reset();
CREATE FUNCTION try_scan(q text DEFAULT 'SELECT id FROM remote.appointments')
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  got bigint[];
  want bigint[];
BEGIN
  EXECUTE format('SELECT coalesce(array_agg(id ORDER BY id), ''{}'') FROM (%s) s', q) INTO got;
  EXECUTE format('SELECT coalesce(array_agg(id ORDER BY id), ''{}'') FROM (%s) s',
                 replace(q, 'remote.appointments', 'local_copy')) INTO want;
  RETURN format('rows %s, same as local: %s', cardinality(got), got = want);
END $$;

-- faults that retries heal (max_retries 3 on this server)
SELECT mock.config('{"fault": {"mode": "500", "count": 2}}');
SELECT try_scan();
SELECT mock.config('{"fault": {"mode": "503", "count": 1, "after": 2}}');
SELECT try_scan();
SELECT mock.config('{"fault": {"mode": "502html", "count": 1}}');
SELECT try_scan();
SELECT mock.config('{"fault": {"mode": "reset", "count": 2}}');
SELECT try_scan();
SELECT mock.config('{"fault": {"mode": "truncate", "count": 1}}');
SELECT try_scan();
SELECT mock.config('{"fault": {"mode": "429", "count": 2, "retry_after_seconds": 1}}');
SELECT mock.clear_log();
SELECT try_scan($$SELECT id FROM remote.appointments WHERE status = 'confirmed'$$);
SELECT status, count(*) FROM mock.requests() GROUP BY 1 ORDER BY 1;
SELECT mock.config('{"fault": {"mode": "hang", "count": 1, "hang_seconds": 3}}');
ALTER SERVER mockapi OPTIONS (SET timeout_ms '1000');
SELECT try_scan($$SELECT id FROM remote.appointments WHERE id = 9$$);
ALTER SERVER mockapi OPTIONS (SET timeout_ms '5000');

-- faults that outlast the retries: an error, no rows
SELECT mock.config('{"fault": {"mode": "503", "count": -1}}');
SELECT try_scan();
SELECT mock.config('{"fault": {"mode": "502html", "count": -1}}');
SELECT try_scan($$SELECT id FROM remote.appointments WHERE id = 9$$);
SELECT mock.config('{"fault": {"mode": "429", "count": -1, "retry_after_seconds": 0}}');
SELECT try_scan($$SELECT id FROM remote.appointments WHERE id = 9$$);
SELECT mock.config('{"fault": null}');

-- bad answers are not retried
SELECT mock.config('{"fault": {"mode": "invalid_json", "count": 1}}');
SELECT try_scan();
SELECT mock.config('{"fault": {"mode": "html200", "count": 1}}');
SELECT try_scan();
-- count(*) reads no column, so it skims its pages (json_skim.c); a bad page
-- still gets the error of the full parse
SELECT mock.config('{"fault": {"mode": "invalid_json", "count": -1}}');
SELECT count(*) FROM remote.appointments;
SELECT mock.config('{"fault": {"mode": "html200", "count": -1}}');
SELECT count(*) FROM remote.appointments;
SELECT mock.config('{"fault": null}');
SELECT mock.config('{"fault": {"mode": "wrong_types", "count": 1}}');
SELECT try_scan($$SELECT id, duration_minutes FROM remote.appointments$$);
SELECT mock.config('{"fault": {"mode": "wrong_types", "count": 1}}');
SELECT try_scan($$SELECT id, appointment_date FROM remote.appointments WHERE status = 'pending'$$);
SELECT mock.config('{"fault": {"mode": "422", "count": 1}}');
SELECT try_scan();
SELECT mock.config('{"fault": {"mode": "huge", "count": 1, "huge_bytes": 3000000}}');
ALTER SERVER mockapi OPTIONS (ADD max_response_bytes '1000000');
SELECT try_scan();
SELECT mock.config('{"fault": {"mode": "length_lie", "count": 1}}');
SELECT try_scan();
ALTER SERVER mockapi OPTIONS (DROP max_response_bytes);
SELECT mock.config('{"fault": {"mode": "huge", "count": 1, "huge_bytes": 3000000}}');
SELECT try_scan();
SELECT mock.config('{"fault": null}');

-- a value that does not fit its column names the column, the appointment and the value
CREATE FOREIGN TABLE narrow (id bigint, duration_minutes smallint, status varchar(3))
  SERVER mockapi;
SELECT * FROM narrow WHERE id = 1;

-- a wrong token: 401, not retried, and the token is nowhere in the message
CREATE SERVER badtoken FOREIGN DATA WRAPPER crm_fdw
  OPTIONS (url :'mock_url', rate_limit_per_minute '0', retry_base_ms '10');
CREATE USER MAPPING FOR CURRENT_USER SERVER badtoken OPTIONS (token '1|wrong-secret-value');
CREATE FOREIGN TABLE bad_appointments (id bigint) SERVER badtoken;
SELECT mock.clear_log();
SELECT * FROM bad_appointments;
SELECT count(*) AS attempts, min(auth) FROM mock.requests();

-- nothing listening: a connection error, after the retries
CREATE SERVER nowhere FOREIGN DATA WRAPPER crm_fdw
  OPTIONS (url 'http://127.0.0.1:1/api/crm', max_retries '1', retry_base_ms '10');
CREATE USER MAPPING FOR CURRENT_USER SERVER nowhere OPTIONS (token '1|x');
CREATE FOREIGN TABLE nowhere_appointments (id bigint) SERVER nowhere;
\set VERBOSITY terse
SELECT * FROM nowhere_appointments;
\set VERBOSITY default
DROP SERVER badtoken, nowhere CASCADE;
