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
