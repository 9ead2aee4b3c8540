#!/usr/bin/env bash
# The batched SQL peer: what a competent engineer would write with curl and
# psql instead of an extension, timed by bench/run against crm_fdw.
#
#   bench/batched_peer.sh full|incremental
#
# It fetches every page of GET /appointments (per_page 100; with
# updated_after = the newest source_updated_at stored, when incremental) with
# one curl over one keep-alive connection, then stores each page in one
# transaction of set-wise statements in one psql session, into schema peer
# (bench/sql/schemas.sql: copies of the crm tables, no triggers):
#   1. one INSERT … SELECT FROM jsonb_to_recordset(page) ON CONFLICT DO UPDATE
#      into peer.appointments (an unchanged row is not rewritten);
#   2. contacts, one per lower(email), newest details win (INSERT … ON CONFLICT);
#   3. a lead per appointment, its status mapped with crm.lead_status_map;
#   4. a deal per paid appointment, its stage mapped with crm.deal_stage_map;
#   5. the links back on the appointments (UPDATE … FROM).
# The rules are crm_fdw's (crm.refresh_crm_records), so the two produce the
# same contacts, leads and deals and pay for the same indexes.
#
# Environment: CRM_MOCK_URL, CRM_MOCK_TOKEN, PG* for psql.  Prints one JSON
# line: {"mode", "pages", "requests", "rows"}.
set -euo pipefail

mode=${1:-}
case "$mode" in
  full|incremental) ;;
  *) echo "usage: $0 full|incremental" >&2; exit 2 ;;
esac

work=$(mktemp -d /tmp/crm_peer.XXXXXX)
trap 'rm -rf "$work"' EXIT

psql_q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }

# The listing to walk: everything, or what changed after the newest row we hold.
listing_url() {
  local url="$CRM_MOCK_URL/appointments?per_page=100" cursor=""
  if [ "$mode" = incremental ]; then
    cursor=$(psql_q -At -c "SELECT to_char(max(source_updated_at) AT TIME ZONE 'UTC',
                                           'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')
                              FROM peer.appointments")
  fi
  [ -z "$cursor" ] || url="$url&updated_after=$cursor"
  echo "$url"
}

# curl every page into $work/page_N.json; prints "pages rows".  Page 1 tells
# how many there are; pages 2..last then come from one curl invocation (URL
# globbing), which keeps its connection alive across them.
fetch_pages() {
  local url=$1 last total
  curl -sS --fail -H "Authorization: Bearer $CRM_MOCK_TOKEN" -H "Accept: application/json" \
       -o "$work/page_1.json" "$url&page=1"
  last=$(jq -e '.pagination.last_page' "$work/page_1.json")
  total=$(jq -e '.pagination.total' "$work/page_1.json")
  if [ "$last" -gt 1 ]; then
    curl -sS --fail -H "Authorization: Bearer $CRM_MOCK_TOKEN" -H "Accept: application/json" \
         -o "$work/page_#1.json" "$url&page=[2-$last]"
  fi
  echo "$last $total"
}

# The SQL that stores one page file (a JSON response on one line, loaded
# whole into peer_page with COPY CSV whose quote and delimiter never occur).
store_page_sql() {
  local file=$1
  cat <<SQL
BEGIN;
TRUNCATE peer_page, peer_ids;
\\copy peer_page FROM '$file' WITH (FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')
WITH up AS (
  INSERT INTO peer.appointments AS a (
         server_name, external_id, client_name, client_email, client_phone,
         appointment_datetime, appointment_date, appointment_time, duration_minutes,
         location, meeting_type, preferred_language, enquiry_type, enquiry_type_display,
         service_type, specific_service, enquiry_details, status, status_display,
         confirmed_at, cancelled_at, cancellation_reason, is_paid, amount, discount_amount,
         final_amount, promo_code, payment_id, payment_status, payment_method, paid_at,
         assigned_admin_id, assigned_admin_name, assigned_admin_email, admin_notes,
         client_notes, source_created_at, source_updated_at)
  SELECT 'peer', r.id, r.full_name, r.email, r.phone,
         r.appointment_datetime, r.appointment_date, r.appointment_time, r.duration_minutes,
         r.location, r.meeting_type, r.preferred_language, r.enquiry_type, r.enquiry_type_display,
         r.service_type, r.specific_service, r.enquiry_details, r.status, r.status_display,
         r.confirmed_at, r.cancelled_at, r.cancellation_reason, r.is_paid, r.amount,
         r.discount_amount, r.final_amount, r.promo_code,
         (r.payment->>'id')::bigint, r.payment->>'status', r.payment->>'payment_method',
         (r.payment->>'paid_at')::timestamptz,
         (r.assigned_admin->>'id')::bigint, r.assigned_admin->>'name', r.assigned_admin->>'email',
         r.admin_notes, r.client_notes, r.created_at, r.updated_at
    FROM peer_page p,
         jsonb_to_recordset(p.doc->'data') AS r(
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
  ON CONFLICT (server_name, external_id) DO UPDATE SET
         client_name = EXCLUDED.client_name, client_email = EXCLUDED.client_email,
         client_phone = EXCLUDED.client_phone, appointment_datetime = EXCLUDED.appointment_datetime,
         appointment_date = EXCLUDED.appointment_date, appointment_time = EXCLUDED.appointment_time,
         duration_minutes = EXCLUDED.duration_minutes, location = EXCLUDED.location,
         meeting_type = EXCLUDED.meeting_type, preferred_language = EXCLUDED.preferred_language,
         enquiry_type = EXCLUDED.enquiry_type, enquiry_type_display = EXCLUDED.enquiry_type_display,
         service_type = EXCLUDED.service_type, specific_service = EXCLUDED.specific_service,
         enquiry_details = EXCLUDED.enquiry_details, status = EXCLUDED.status,
         status_display = EXCLUDED.status_display, confirmed_at = EXCLUDED.confirmed_at,
         cancelled_at = EXCLUDED.cancelled_at, cancellation_reason = EXCLUDED.cancellation_reason,
         is_paid = EXCLUDED.is_paid, amount = EXCLUDED.amount,
         discount_amount = EXCLUDED.discount_amount, final_amount = EXCLUDED.final_amount,
         promo_code = EXCLUDED.promo_code, payment_id = EXCLUDED.payment_id,
         payment_status = EXCLUDED.payment_status, payment_method = EXCLUDED.payment_method,
         paid_at = EXCLUDED.paid_at, assigned_admin_id = EXCLUDED.assigned_admin_id,
         assigned_admin_name = EXCLUDED.assigned_admin_name,
         assigned_admin_email = EXCLUDED.assigned_admin_email, admin_notes = EXCLUDED.admin_notes,
         client_notes = EXCLUDED.client_notes, source_created_at = EXCLUDED.source_created_at,
         source_updated_at = EXCLUDED.source_updated_at, last_synced_at = now(), updated_at = now()
   WHERE a.source_updated_at IS DISTINCT FROM EXCLUDED.source_updated_at
  RETURNING a.id)
INSERT INTO peer_ids SELECT id FROM up;

INSERT INTO peer.contacts AS c (email, name, phone, preferred_language, source_updated_at)
SELECT DISTINCT ON (lower(a.client_email))
       a.client_email, a.client_name, a.client_phone, a.preferred_language, a.source_updated_at
  FROM peer.appointments a
 WHERE a.id = ANY (ARRAY(SELECT id FROM peer_ids)) AND a.client_email IS NOT NULL
 ORDER BY lower(a.client_email), a.source_updated_at DESC NULLS LAST, a.id DESC
ON CONFLICT ((lower(email))) DO UPDATE
   SET email = EXCLUDED.email, name = EXCLUDED.name, phone = EXCLUDED.phone,
       preferred_language = EXCLUDED.preferred_language,
       source_updated_at = EXCLUDED.source_updated_at, updated_at = now()
 WHERE EXCLUDED.source_updated_at >= c.source_updated_at;

INSERT INTO peer.leads AS l (appointment_id, contact_id, source, enquiry_type, service_type, details, status)
SELECT a.id, c.id, 'Website Appointment', a.enquiry_type_display, a.service_type,
       a.enquiry_details, coalesce(m.lead_status, 'new')
  FROM peer.appointments a
  LEFT JOIN peer.contacts c ON lower(c.email) = lower(a.client_email)
  LEFT JOIN crm.lead_status_map m ON m.appointment_status = a.status
 WHERE a.id = ANY (ARRAY(SELECT id FROM peer_ids))
ON CONFLICT (appointment_id) DO UPDATE
   SET contact_id = EXCLUDED.contact_id, status = EXCLUDED.status, updated_at = now();

INSERT INTO peer.deals AS d (appointment_id, contact_id, lead_id, title, amount, stage, expected_close_date)
SELECT a.id, c.id, l.id, coalesce(a.enquiry_type_display, '') || ' - ' || coalesce(a.client_name, ''),
       a.final_amount, coalesce(m.deal_stage, 'discovery'), a.appointment_datetime
  FROM peer.appointments a
  LEFT JOIN peer.contacts c ON lower(c.email) = lower(a.client_email)
  LEFT JOIN peer.leads l ON l.appointment_id = a.id
  LEFT JOIN crm.deal_stage_map m ON m.appointment_status = a.status
 WHERE a.id = ANY (ARRAY(SELECT id FROM peer_ids)) AND (a.is_paid OR a.crm_deal_id IS NOT NULL)
ON CONFLICT (appointment_id) DO UPDATE
   SET contact_id = EXCLUDED.contact_id, stage = EXCLUDED.stage, amount = EXCLUDED.amount,
       updated_at = now();

UPDATE peer.appointments a
   SET crm_contact_id = c.id, crm_lead_id = l.id, crm_deal_id = d.id
  FROM peer.appointments a1
  LEFT JOIN peer.contacts c ON lower(c.email) = lower(a1.client_email)
  LEFT JOIN peer.leads l ON l.appointment_id = a1.id
  LEFT JOIN peer.deals d ON d.appointment_id = a1.id
 WHERE a1.id = ANY (ARRAY(SELECT id FROM peer_ids)) AND a.id = a1.id
   AND (a.crm_contact_id, a.crm_lead_id, a.crm_deal_id) IS DISTINCT FROM (c.id, l.id, d.id);
COMMIT;
SQL
}

main() {
  local url counts pages rows p
  url=$(listing_url)
  counts=$(fetch_pages "$url")
  read -r pages rows <<<"$counts"
  {
    echo "CREATE TEMP TABLE peer_page (doc jsonb);"
    echo "CREATE TEMP TABLE peer_ids (id bigint);"
    for ((p = 1; p <= pages; p++)); do
      # an empty listing still answers page 1, with no rows: nothing to store
      store_page_sql "$work/page_$p.json"
    done
  } | psql_q >/dev/null
  printf '{"mode":"%s","pages":%d,"requests":%d,"rows":%d}\n' "$mode" "$pages" "$pages" "$rows"
}

main
