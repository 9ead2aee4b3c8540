--
-- options: every option is validated where it is set, with the option named.
--
\getenv mock_url CRM_MOCK_URL
-- server
CREATE SERVER bad FOREIGN DATA WRAPPER crm_fdw;
CREATE SERVER bad FOREIGN DATA WRAPPER crm_fdw OPTIONS (url 'ftp://example.com/api');
CREATE SERVER bad FOREIGN DATA WRAPPER crm_fdw OPTIONS (url 'file:///etc/passwd');
CREATE SERVER bad FOREIGN DATA WRAPPER crm_fdw OPTIONS (url 'https://');
CREATE SERVER bad FOREIGN DATA WRAPPER crm_fdw OPTIONS (url 'https://example.com/api?x=1');
CREATE SERVER bad FOREIGN DATA WRAPPER crm_fdw OPTIONS (url 'https://example.com', page_size '0');
CREATE SERVER bad FOREIGN DATA WRAPPER crm_fdw OPTIONS (url 'https://example.com', page_size '101');
CREATE SERVER bad FOREIGN DATA WRAPPER crm_fdw OPTIONS (url 'https://example.com', timeout_ms 'soon');
CREATE SERVER bad FOREIGN DATA WRAPPER crm_fdw OPTIONS (url 'https://example.com', max_retries '-1');
CREATE SERVER bad FOREIGN DATA WRAPPER crm_fdw OPTIONS (url 'https://example.com', ssl_verify 'maybe');
CREATE SERVER bad FOREIGN DATA WRAPPER crm_fdw OPTIONS (url 'https://example.com', ca_file 'relative.pem');
CREATE SERVER bad FOREIGN DATA WRAPPER crm_fdw OPTIONS (url 'https://example.com', token 'x');
CREATE SERVER bad FOREIGN DATA WRAPPER crm_fdw OPTIONS (url 'https://example.com', max_response_bytes '10');
CREATE SERVER good FOREIGN DATA WRAPPER crm_fdw
  OPTIONS (url 'HTTPS://example.com/api/crm/', timeout_ms '1000', connect_timeout_ms '500',
           max_retries '0', retry_base_ms '100', rate_limit_per_minute '60', page_size '25',
           max_response_bytes '1048576', ssl_verify 'true', ca_file '/etc/ssl/certs/ca-certificates.crt');
ALTER SERVER good OPTIONS (DROP url);
ALTER SERVER good OPTIONS (SET page_size '1000');
ALTER SERVER good OPTIONS (SET page_size '50');
-- user mapping
CREATE USER MAPPING FOR CURRENT_USER SERVER good OPTIONS (password 'x');
CREATE USER MAPPING FOR CURRENT_USER SERVER good OPTIONS (token '');
CREATE USER MAPPING FOR CURRENT_USER SERVER good OPTIONS (token E'1|abc\r\nX-Evil: 1');
CREATE USER MAPPING FOR CURRENT_USER SERVER good OPTIONS (token '1|abc');
-- foreign table and column
CREATE FOREIGN TABLE t_bad (id bigint) SERVER good OPTIONS (resource 'clients');
CREATE FOREIGN TABLE t_bad (id bigint) SERVER good OPTIONS (resource 'recent', minutes '0');
CREATE FOREIGN TABLE t_bad (id bigint) SERVER good OPTIONS (resource 'recent', minutes '1441');
CREATE FOREIGN TABLE t_bad (id bigint) SERVER good OPTIONS (url 'https://x');
CREATE FOREIGN TABLE t_bad (id bigint OPTIONS (json_path '')) SERVER good;
CREATE FOREIGN TABLE t_bad (id bigint OPTIONS (json_path 'payment..status')) SERVER good;
CREATE FOREIGN TABLE t_bad (id bigint OPTIONS (column_name 'x')) SERVER good;
CREATE FOREIGN TABLE t_good (id bigint, st text OPTIONS (json_path 'payment.status'))
  SERVER good OPTIONS (resource 'recent', minutes '10');
-- the wrapper itself takes no options
ALTER FOREIGN DATA WRAPPER crm_fdw OPTIONS (ADD url 'https://x');
-- a user mapping without a token is refused at scan time
DROP USER MAPPING FOR CURRENT_USER SERVER good;
CREATE USER MAPPING FOR CURRENT_USER SERVER good OPTIONS (token '1|abc');
ALTER USER MAPPING FOR CURRENT_USER SERVER good OPTIONS (DROP token);
SELECT * FROM t_good;
-- no user mapping at all
DROP USER MAPPING FOR CURRENT_USER SERVER good;
SELECT * FROM t_good;
DROP SERVER good CASCADE;
