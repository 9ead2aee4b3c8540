--
-- import: IMPORT FOREIGN SCHEMA creates the four tables of the API.
--
\d+ remote.appointments
\d remote.appointments_recent
\d+ remote.appointment_stats
\d remote.appointments_export
CREATE SCHEMA only_stats;
IMPORT FOREIGN SCHEMA api LIMIT TO (appointment_stats, no_such_table) FROM SERVER mockapi INTO only_stats;
SELECT relname FROM pg_class WHERE relnamespace = 'only_stats'::regnamespace ORDER BY 1;
CREATE SCHEMA all_but;
IMPORT FOREIGN SCHEMA api EXCEPT (appointments_export, appointments_recent) FROM SERVER mockapi INTO all_but;
SELECT relname FROM pg_class WHERE relnamespace = 'all_but'::regnamespace ORDER BY 1;
DROP SCHEMA only_stats, all_but CASCADE;
