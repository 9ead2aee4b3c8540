/*-------------------------------------------------------------------------
 *
 * http.c
 *		  The HTTP transport of crm_fdw: one GET against the remote
 *		  appointments API, done safely inside a backend.
 *
 * Everything that talks to libcurl lives here.  A backend keeps one
 * keep-alive easy handle and one multi handle for its whole life; each
 * request resets the easy handle's options (connections and the DNS cache
 * survive a reset) and drives it through the multi handle in short polls, so
 * that a query cancel or statement_timeout stops an in-flight transfer within
 * a fraction of a second.
 *
 * Around each transfer this file implements the API contract's transport
 * rules: bearer authentication that libcurl never forwards to another host on
 * a redirect, retries with jittered exponential backoff for network errors,
 * 5xx and 429 (honouring Retry-After), a client-side sliding-window rate
 * limit per server, a bound on the response size, and errors a user can act
 * on for everything else.
 *
 * A caller that knows which page it will ask for next can send that request
 * ahead (crmHttpPrefetch) before it works on the page it has: the server
 * prepares the answer meanwhile, and the next crmHttpGet of the same URL picks
 * it up.  At most one request is ahead; any other request, the end of a scan
 * and an aborted transaction drop it.
 *
 * libcurl callbacks never palloc, elog or ereport (a longjmp through libcurl
 * would leave the handle broken): the body is collected in a bounded malloc
 * buffer that is freed after each transfer, on ERROR while attached, and in
 * any case at the start of the next request.  The API token goes to libcurl
 * only as CURLOPT_XOAUTH2_BEARER and never into a message.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "crm_fdw.h"

#include <limits.h>
#include <time.h>

#include <curl/curl.h>
#include <curl/header.h>

#include "access/xact.h"
#include "common/pg_prng.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/wait_event.h"


/* How often a transfer in progress looks at pending interrupts. */
#define CRM_HTTP_POLL_MS			100
#define CRM_HTTP_MAX_REDIRS			5L
/* Ceiling of the exponential backoff, and of a Retry-After wait. */
#define CRM_HTTP_BACKOFF_CAP_MS		60000
#define CRM_HTTP_RETRY_AFTER_CAP_MS 120000
/* The rate-limit window, and the margin added to every window edge. */
#define CRM_RATE_WINDOW_MS			60000
#define CRM_RATE_MARGIN_MS			250
/* Send times remembered per server when no client-side limit is set. */
#define CRM_RATE_RING_UNLIMITED		1024
/* First allocation of the body buffer; it doubles from there. */
#define CRM_HTTP_INITIAL_BUFFER		16384
/* Longest piece of remote text put into an error detail. */
#define CRM_HTTP_DETAIL_MAX			500

/* The body of the response in progress; filled by the write callback. */
typedef struct CrmHttpBody
{
	char	   *data;			/* malloc'd, not NUL-terminated */
	size_t		len;
	size_t		cap;
	size_t		limit;			/* max_response_bytes; 0 = unlimited */
	bool		too_big;		/* callback refused: limit reached */
	bool		oom;			/* callback refused: realloc failed */
} CrmHttpBody;

/* Recent send times of this backend to one server (a ring buffer). */
typedef struct CrmRateState
{
	Oid			serverid;		/* hash key */
	int			head;			/* index of the oldest send time */
	int			count;
	int			capacity;
	int64	   *sent_ms;		/* monotonic ms, in TopMemoryContext */
	int64		hold_until_ms;	/* after X-RateLimit-Remaining: 0; 0 = none */
	int64		recorded;		/* sends ever recorded: numbers them for handoff */
} CrmRateState;

static bool crm_curl_initialized = false;
static CURL *crm_easy = NULL;
static CURLM *crm_multi = NULL;
static struct curl_slist *crm_headers = NULL;
/* Is crm_easy added to crm_multi?  An ERROR may leave it so. */
static bool crm_attached = false;
static CrmHttpBody crm_body;
static char crm_errbuf[CURL_ERROR_SIZE];
static HTAB *crm_rate_states = NULL;
/* The request sent ahead: its URL (TopMemoryContext) and connection. */
static char *crm_ahead_url = NULL;
static const CrmConnInfo *crm_ahead_conn = NULL;
/* How the last crmHttpGet failed: its HTTP status (or 0), or timed out. */
static long crm_failed_status = 0;
static bool crm_failed_timeout = false;

static void crm_http_init(void);
static void crm_http_detach(void);
static void crm_http_discard_body(void);
static size_t crm_http_write_cb(char *ptr, size_t size, size_t nmemb,
								void *userdata);
static void crm_http_prepare(CrmConnInfo *conn, const char *url);
static CURLcode crm_http_perform(void);
static bool crm_http_retryable_curl(CURLcode rc);
static int	crm_http_backoff_ms(CrmConnInfo *conn, int attempt);
static int	crm_http_retry_after_ms(void);
static TimestampTz crm_http_server_date(void);
static int64 crm_http_now_ms(void);
static void crm_http_sleep_until(int64 until_ms);
static CrmRateState *crm_http_rate_state(Oid serverid);
static void crm_http_rate_prune(CrmRateState *st, int64 now);
static int64 crm_http_rate_wait_until(CrmConnInfo *conn, int64 now);
static void crm_http_rate_limit_wait(CrmConnInfo *conn);
static void crm_http_rate_record(CrmConnInfo *conn);
static void crm_http_rate_append(CrmRateState *st, CrmConnInfo *conn, int64 sent_ms);
static void crm_http_xact_callback(XactEvent event, void *arg);
static void crm_http_rate_note_headers(CrmConnInfo *conn);
static bool crm_http_header_int64(const char *name, int64 *value);
static char *crm_http_clean_text(const char *s, size_t len, size_t maxlen);
static char *crm_http_json_excerpt(json_t *value);
static char *crm_http_describe_body(long status, bool with_errors);
static void crm_http_raise_curl_error(CrmConnInfo *conn, const char *path,
									  CURLcode rc, int attempts) pg_attribute_noreturn();
static void crm_http_raise_status_error(CrmConnInfo *conn, const char *path,
										long status, int attempts) pg_attribute_noreturn();

/*
 * Set a libcurl option or raise an ERROR naming it.  Only the option's name
 * goes into the message, never its value (one of them is the token).
 */
#define CRM_CURL_SETOPT(option, value) \
	do { \
		CURLcode	crm_rc_ = curl_easy_setopt(crm_easy, (option), (value)); \
		if (crm_rc_ != CURLE_OK) \
			ereport(ERROR, \
					(errcode(ERRCODE_FDW_ERROR), \
					 errmsg("could not set libcurl option %s: %s", \
							#option, curl_easy_strerror(crm_rc_)))); \
	} while (0)

/* Check the result of a curl_multi_* call, naming the call. */
#define CRM_CURLM_CHECK(call, what) \
	do { \
		CURLMcode	crm_mrc_ = (call); \
		if (crm_mrc_ != CURLM_OK) \
			ereport(ERROR, \
					(errcode(ERRCODE_FDW_ERROR), \
					 errmsg("%s failed: %s", \
							(what), curl_multi_strerror(crm_mrc_)))); \
	} while (0)


/*
 * crmHttpGet
 *		GET <url><path_and_query> and return the body of a successful answer.
 *
 * The retry loop lives here: each attempt first waits for the client-side
 * rate limit, then runs one transfer; network errors, 5xx and 429 are retried
 * up to max_retries times after an interruptible backoff, everything else
 * that is not a success raises an ERROR naming the path (never the token).
 */
void
crmHttpGet(CrmConnInfo *conn, const char *path_and_query, bool allow_404,
		   CrmHttpResponse *resp, CrmHttpStats *stats)
{
	CrmHttpStats local_stats;
	char	   *url;
	int			max_attempts;
	int			attempt = 0;
	bool		ahead;

	if (stats == NULL)
	{
		memset(&local_stats, 0, sizeof(local_stats));
		stats = &local_stats;
	}
	memset(resp, 0, sizeof(*resp));
	crm_failed_status = 0;
	crm_failed_timeout = false;

	if (conn->opts.url == NULL || conn->opts.url[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("server \"%s\" has no url option", conn->servername),
				 errhint("Set the url option of server \"%s\" to the base URL of the API.",
						 conn->servername)));

	crm_http_init();

	url = psprintf("%s%s", conn->opts.url, path_and_query);
	max_attempts = Max(conn->opts.max_retries, 0) + 1;

	/* the first attempt may be on its way already */
	ahead = crm_ahead_url != NULL && crm_ahead_conn == conn &&
		strcmp(crm_ahead_url, url) == 0;
	if (ahead)
	{
		pfree(crm_ahead_url);
		crm_ahead_url = NULL;
		crm_ahead_conn = NULL;
	}
	else
		crmHttpCancelPrefetch();

	for (;;)
	{
		CURLcode	rc;
		long		status = 0;
		int			delay_ms;

		attempt++;
		if (!(ahead && attempt == 1))
		{
			crm_http_rate_limit_wait(conn);
			crm_http_prepare(conn, url);
		}

		stats->requests++;
		if (attempt > 1)
			stats->retries++;

		rc = crm_http_perform();

		if (rc != CURLE_OK)
		{
			if (crm_body.too_big || crm_body.oom ||
				rc == CURLE_FILESIZE_EXCEEDED ||
				!crm_http_retryable_curl(rc) || attempt >= max_attempts)
				crm_http_raise_curl_error(conn, path_and_query, rc, attempt);

			delay_ms = crm_http_backoff_ms(conn, attempt);
			elog(DEBUG1, "retrying GET %s in %d ms after %s",
				 path_and_query, delay_ms, curl_easy_strerror(rc));
		}
		else
		{
			if (curl_easy_getinfo(crm_easy, CURLINFO_RESPONSE_CODE,
								  &status) != CURLE_OK)
				status = 0;

			if (status != 429)
				crm_http_rate_note_headers(conn);

			if ((status >= 200 && status <= 299) ||
				(status == 404 && allow_404))
			{
				resp->status = status;
				resp->body_len = crm_body.len;
				resp->body = MemoryContextAllocHuge(CurrentMemoryContext,
													crm_body.len + 1);
				if (crm_body.len > 0)
					memcpy(resp->body, crm_body.data, crm_body.len);
				resp->body[crm_body.len] = '\0';
				resp->server_date = crm_http_server_date();

				stats->pages++;
				stats->bytes += crm_body.len;

				crm_http_discard_body();
				pfree(url);
				return;
			}

			if (status == 429)
			{
				stats->rate_limited++;
				if (attempt >= max_attempts)
					crm_http_raise_status_error(conn, path_and_query, status,
												attempt);
				delay_ms = crm_http_retry_after_ms();
				if (delay_ms < 0)
					delay_ms = crm_http_backoff_ms(conn, attempt);
			}
			else if (status >= 500 && status <= 599)
			{
				if (attempt >= max_attempts)
					crm_http_raise_status_error(conn, path_and_query, status,
												attempt);
				delay_ms = crm_http_backoff_ms(conn, attempt);
			}
			else
				crm_http_raise_status_error(conn, path_and_query, status,
											attempt);

			elog(DEBUG1, "retrying GET %s in %d ms after HTTP %ld",
				 path_and_query, delay_ms, status);
		}

		crm_http_discard_body();
		crm_http_sleep_until(crm_http_now_ms() + delay_ms);
	}
}

/*
 * crmHttpPrefetch
 *		Send GET <url><path_and_query> now, for a crmHttpGet of the same URL
 *		and connection to pick up later.
 *
 * Only the send happens here; the answer waits in the socket.  Nothing is
 * sent when the rate limit would make this request wait (a page that may
 * never be read must not cost a wait), and a failure here only means the
 * later crmHttpGet sends the request itself, where errors are reported.  A
 * request sent ahead and then dropped is not in the caller's counters.
 */
void
crmHttpPrefetch(CrmConnInfo *conn, const char *path_and_query)
{
	int			running;

	crmHttpCancelPrefetch();
	if (conn->opts.url == NULL || conn->opts.url[0] == '\0')
		return;
	crm_http_init();
	if (crm_http_rate_wait_until(conn, crm_http_now_ms()) > 0)
		return;

	crm_ahead_url = MemoryContextStrdup(TopMemoryContext,
										psprintf("%s%s", conn->opts.url, path_and_query));
	crm_ahead_conn = conn;
	crm_http_rate_record(conn);
	crm_http_prepare(conn, crm_ahead_url);
	if (curl_multi_add_handle(crm_multi, crm_easy) != CURLM_OK)
	{
		crmHttpCancelPrefetch();
		return;
	}
	crm_attached = true;
	if (curl_multi_perform(crm_multi, &running) != CURLM_OK)
		crmHttpCancelPrefetch();
}

/*
 * crmHttpCancelPrefetch
 *		Drop the request sent ahead, if any (its connection is closed), and
 *		whatever an ERROR left of an earlier transfer.
 *
 * No palloc, no ereport: also called when a transaction aborts.
 */
void
crmHttpCancelPrefetch(void)
{
	crm_http_detach();
	crm_http_discard_body();
	if (crm_ahead_url != NULL)
		pfree(crm_ahead_url);
	crm_ahead_url = NULL;
	crm_ahead_conn = NULL;
}

static void
crm_http_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		crmHttpCancelPrefetch();
}

/*
 * crmAppendUrlEncoded
 *		Percent-encode value into buf, for a query-string parameter.
 *
 * Byte-wise, so multibyte UTF-8 comes out as one %XX per byte; only the
 * RFC 3986 unreserved characters pass unchanged, so '+', '&', '=' and spaces
 * in a value can never change the meaning of the query string.
 */
void
crmAppendUrlEncoded(StringInfo buf, const char *value)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p;

	for (p = (const unsigned char *) value; *p; p++)
	{
		unsigned char c = *p;

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			(c >= '0' && c <= '9') ||
			c == '-' || c == '.' || c == '_' || c == '~')
			appendStringInfoChar(buf, (char) c);
		else
		{
			appendStringInfoChar(buf, '%');
			appendStringInfoChar(buf, hex[c >> 4]);
			appendStringInfoChar(buf, hex[c & 0x0F]);
		}
	}
}

/*
 * crm_http_init
 *		Create the per-backend libcurl state on first use.
 *
 * curl_global_init is not thread-safe and must run once per process; the
 * handles are kept for the backend's life so that connections stay alive
 * between requests.
 */
static void
crm_http_init(void)
{
	if (!crm_curl_initialized)
	{
		CURLcode	rc = curl_global_init(CURL_GLOBAL_ALL);

		if (rc != CURLE_OK)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_ERROR),
					 errmsg("could not initialize libcurl: %s",
							curl_easy_strerror(rc))));
		crm_curl_initialized = true;
		RegisterXactCallback(crm_http_xact_callback, NULL);
	}

	if (crm_multi == NULL)
	{
		crm_multi = curl_multi_init();
		if (crm_multi == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_OUT_OF_MEMORY),
					 errmsg("could not create a libcurl multi handle")));
	}

	if (crm_easy == NULL)
	{
		crm_easy = curl_easy_init();
		if (crm_easy == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_OUT_OF_MEMORY),
					 errmsg("could not create a libcurl easy handle")));
	}

	if (crm_headers == NULL)
	{
		crm_headers = curl_slist_append(NULL, "Accept: application/json");
		if (crm_headers == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_OUT_OF_MEMORY),
					 errmsg("could not build the HTTP request headers")));
	}
}

/*
 * crm_http_detach
 *		Remove the easy handle from the multi handle if it is attached.
 *
 * Removing a handle mid-transfer aborts that transfer and closes its
 * connection, which is what a cancel wants; afterwards the handle can be used
 * again.  Safe in a PG_CATCH block: no palloc, no ereport.
 */
static void
crm_http_detach(void)
{
	if (crm_attached)
	{
		(void) curl_multi_remove_handle(crm_multi, crm_easy);
		crm_attached = false;
	}
}

/*
 * crm_http_discard_body
 *		Free the malloc'd body buffer and forget its state.
 *
 * Called after every transfer and at the start of every request, so at most
 * one buffer (bounded by max_response_bytes) ever exists.  Safe in PG_CATCH.
 */
static void
crm_http_discard_body(void)
{
	if (crm_body.data != NULL)
		free(crm_body.data);
	memset(&crm_body, 0, sizeof(crm_body));
}

/*
 * crm_http_write_cb
 *		libcurl write callback: append a piece of the body to crm_body.
 *
 * Runs inside libcurl, so it must not palloc or ereport: it grows a malloc
 * buffer by doubling (by the bytes actually received, never by what
 * Content-Length claims) and refuses with a short count past the limit or on
 * out-of-memory, leaving a flag for crmHttpGet to raise the ERROR.
 */
static size_t
crm_http_write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	CrmHttpBody *b = (CrmHttpBody *) userdata;
	size_t		n = size * nmemb;

	if (n == 0)
		return 0;

	if (b->limit > 0 && n > b->limit - b->len)
	{
		b->too_big = true;
		return 0;
	}

	if (n > b->cap - b->len)
	{
		size_t		newcap = b->cap > 0 ? b->cap : CRM_HTTP_INITIAL_BUFFER;
		char	   *newdata;

		while (newcap - b->len < n)
		{
			if (newcap > SIZE_MAX / 2)
			{
				b->oom = true;
				return 0;
			}
			newcap *= 2;
		}
		if (b->limit > 0 && newcap > b->limit)
			newcap = b->limit;	/* still >= len + n, checked above */

		newdata = realloc(b->data, newcap);
		if (newdata == NULL)
		{
			b->oom = true;
			return 0;
		}
		b->data = newdata;
		b->cap = newcap;
	}

	memcpy(b->data + b->len, ptr, n);
	b->len += n;
	return n;
}

/*
 * crm_http_prepare
 *		Reset the easy handle and set every option of one attempt.
 *
 * A reset per attempt means no option of an earlier request (another
 * server's CA file, another user's token) can leak into this one, while the
 * connection cache survives.  The token is given as CURLOPT_XOAUTH2_BEARER
 * with CURLAUTH_BEARER rather than as a raw header: libcurl then sends it
 * only to the host, port and scheme of the original URL, never to a redirect
 * target (CURLOPT_UNRESTRICTED_AUTH stays 0), and never in a message.
 */
static void
crm_http_prepare(CrmConnInfo *conn, const char *url)
{
	CrmServerOptions *opts = &conn->opts;

	curl_easy_reset(crm_easy);

	crm_errbuf[0] = '\0';
	crm_http_discard_body();
	crm_body.limit = opts->max_response_bytes > 0 ?
		(size_t) opts->max_response_bytes : 0;

	CRM_CURL_SETOPT(CURLOPT_ERRORBUFFER, crm_errbuf);
	CRM_CURL_SETOPT(CURLOPT_NOSIGNAL, 1L);
	/* an Authorization header is set: never dump the traffic */
	CRM_CURL_SETOPT(CURLOPT_VERBOSE, 0L);
	CRM_CURL_SETOPT(CURLOPT_URL, url);
	CRM_CURL_SETOPT(CURLOPT_HTTPGET, 1L);
	CRM_CURL_SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
	CRM_CURL_SETOPT(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	CRM_CURL_SETOPT(CURLOPT_FOLLOWLOCATION, 1L);
	CRM_CURL_SETOPT(CURLOPT_MAXREDIRS, CRM_HTTP_MAX_REDIRS);
	CRM_CURL_SETOPT(CURLOPT_UNRESTRICTED_AUTH, 0L);
	CRM_CURL_SETOPT(CURLOPT_HTTPHEADER, crm_headers);
	CRM_CURL_SETOPT(CURLOPT_USERAGENT, "crm_fdw/" CRM_FDW_VERSION);
	CRM_CURL_SETOPT(CURLOPT_ACCEPT_ENCODING, "");
	CRM_CURL_SETOPT(CURLOPT_TIMEOUT_MS, (long) Max(opts->timeout_ms, 0));
	CRM_CURL_SETOPT(CURLOPT_CONNECTTIMEOUT_MS,
					(long) Max(opts->connect_timeout_ms, 0));
	CRM_CURL_SETOPT(CURLOPT_SSL_VERIFYPEER, opts->ssl_verify ? 1L : 0L);
	CRM_CURL_SETOPT(CURLOPT_SSL_VERIFYHOST, opts->ssl_verify ? 2L : 0L);
	if (opts->ca_file != NULL && opts->ca_file[0] != '\0')
		CRM_CURL_SETOPT(CURLOPT_CAINFO, opts->ca_file);

	/* refuses up front when Content-Length announces more than the limit */
	if (crm_body.limit > 0)
		CRM_CURL_SETOPT(CURLOPT_MAXFILESIZE_LARGE,
						(curl_off_t) opts->max_response_bytes);
	CRM_CURL_SETOPT(CURLOPT_WRITEFUNCTION, crm_http_write_cb);
	CRM_CURL_SETOPT(CURLOPT_WRITEDATA, (void *) &crm_body);

	if (conn->token != NULL && conn->token[0] != '\0')
	{
		CRM_CURL_SETOPT(CURLOPT_HTTPAUTH, (long) CURLAUTH_BEARER);
		CRM_CURL_SETOPT(CURLOPT_XOAUTH2_BEARER, conn->token);
	}
}

/*
 * crm_http_perform
 *		Run the prepared transfer to completion and return libcurl's result.
 *
 * Driven through the multi interface in polls of CRM_HTTP_POLL_MS so that
 * interrupts are serviced while waiting for the network.  If servicing one
 * raises an ERROR (cancel, statement_timeout, terminate), the PG_CATCH block
 * detaches the handle first, which aborts the transfer and closes its socket
 * and leaves the handle reusable; an interrupt that does not raise (a
 * barrier, a memory-context dump) leaves the transfer running.
 */
static CURLcode
crm_http_perform(void)
{
	volatile CURLcode result = CURLE_OK;
	volatile bool done = false;

	if (!crm_attached)
	{
		CRM_CURLM_CHECK(curl_multi_add_handle(crm_multi, crm_easy),
						"curl_multi_add_handle");
		crm_attached = true;
	}

	PG_TRY();
	{
		while (!done)
		{
			int			running = 0;
			int			queued;
			CURLMsg    *msg;

			CHECK_FOR_INTERRUPTS();

			CRM_CURLM_CHECK(curl_multi_perform(crm_multi, &running),
							"curl_multi_perform");

			while ((msg = curl_multi_info_read(crm_multi, &queued)) != NULL)
			{
				if (msg->msg == CURLMSG_DONE && msg->easy_handle == crm_easy)
				{
					result = msg->data.result;
					done = true;
				}
			}

			if (!done)
			{
				if (running == 0)
					elog(ERROR, "libcurl finished a transfer without reporting its result");

				CRM_CURLM_CHECK(curl_multi_poll(crm_multi, NULL, 0,
												CRM_HTTP_POLL_MS, NULL),
								"curl_multi_poll");
			}
		}
	}
	PG_CATCH();
	{
		crm_http_detach();
		crm_http_discard_body();
		PG_RE_THROW();
	}
	PG_END_TRY();

	/* response code, content type and headers stay readable after this */
	crm_http_detach();

	return result;
}

/*
 * crm_http_retryable_curl
 *		Is this libcurl failure worth another attempt?
 *
 * Only failures of the network or of the remote end mid-transfer; a bad
 * certificate, a malformed URL or a redirect loop will fail the same way
 * again.  Host resolution is included because DNS hiccups are transient.
 */
static bool
crm_http_retryable_curl(CURLcode rc)
{
	switch (rc)
	{
		case CURLE_COULDNT_RESOLVE_HOST:
		case CURLE_COULDNT_CONNECT:
		case CURLE_OPERATION_TIMEDOUT:
		case CURLE_SEND_ERROR:
		case CURLE_RECV_ERROR:
		case CURLE_PARTIAL_FILE:
		case CURLE_GOT_NOTHING:
		case CURLE_ABORTED_BY_CALLBACK:
		case CURLE_HTTP2:
		case CURLE_HTTP2_STREAM:
			return true;
		default:
			return false;
	}
}

/*
 * crm_http_backoff_ms
 *		Delay before retry number attempt: retry_base_ms * 2^(attempt-1),
 *		capped at 60 s, times a random factor in [0.5, 1.0].
 *
 * The jitter keeps several backends that failed together from retrying in
 * lockstep against a server that is already struggling.
 */
static int
crm_http_backoff_ms(CrmConnInfo *conn, int attempt)
{
	double		delay = Max(conn->opts.retry_base_ms, 0);
	int			i;

	for (i = 1; i < attempt && delay < CRM_HTTP_BACKOFF_CAP_MS; i++)
		delay *= 2;
	if (delay > CRM_HTTP_BACKOFF_CAP_MS)
		delay = CRM_HTTP_BACKOFF_CAP_MS;

	delay *= 0.5 + 0.5 * pg_prng_double(&pg_global_prng_state);

	return (int) delay;
}

/*
 * crm_http_server_date
 *		The Date header of the last response, or 0.
 *
 * The sync bounds its cursor by the API's own clock, which may differ from
 * ours by minutes.
 */
static TimestampTz
crm_http_server_date(void)
{
	struct curl_header *h;
	time_t		when;

	if (curl_easy_header(crm_easy, "Date", 0, CURLH_HEADER, -1,
						 &h) != CURLHE_OK || h->value == NULL)
		return 0;
	when = curl_getdate(h->value, NULL);
	if (when == (time_t) -1)
		return 0;
	return time_t_to_timestamptz((pg_time_t) when);
}

/*
 * crm_http_retry_after_ms
 *		The wait a 429 response asks for in Retry-After, or -1 if none.
 *
 * Accepts delay-seconds or an HTTP-date (RFC 9110), caps the wait at 120 s,
 * and adds the rate-limit margin because the server counts in whole seconds
 * and a retry on the exact edge can be refused again.
 */
static int
crm_http_retry_after_ms(void)
{
	struct curl_header *h;
	const char *v;
	int64		secs = 0;
	int64		ms;

	if (curl_easy_header(crm_easy, "Retry-After", 0, CURLH_HEADER, -1,
						 &h) != CURLHE_OK || h->value == NULL)
		return -1;

	v = h->value;
	while (*v == ' ' || *v == '\t')
		v++;

	if (*v >= '0' && *v <= '9')
	{
		while (*v >= '0' && *v <= '9')
		{
			if (secs < CRM_HTTP_RETRY_AFTER_CAP_MS)
				secs = secs * 10 + (*v - '0');
			v++;
		}
		while (*v == ' ' || *v == '\t')
			v++;
		if (*v != '\0')
			return -1;
	}
	else
	{
		time_t		when = curl_getdate(v, NULL);

		if (when == (time_t) -1)
			return -1;
		secs = (int64) when - (int64) time(NULL);
		if (secs < 0)
			secs = 0;
		if (secs > CRM_HTTP_RETRY_AFTER_CAP_MS)
			secs = CRM_HTTP_RETRY_AFTER_CAP_MS;
	}

	ms = secs * 1000 + CRM_RATE_MARGIN_MS;
	return (int) Min(ms, CRM_HTTP_RETRY_AFTER_CAP_MS);
}

/*
 * crm_http_now_ms
 *		Milliseconds on the monotonic clock.
 *
 * Waits and rate-limit windows must not stretch or shrink when the wall
 * clock is adjusted.
 */
static int64
crm_http_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * crm_http_sleep_until
 *		Wait until the monotonic time until_ms, servicing interrupts.
 *
 * Sleeps on the process latch, so a cancel, statement_timeout or postmaster
 * death ends the wait at once; never a plain sleep.
 */
static void
crm_http_sleep_until(int64 until_ms)
{
	for (;;)
	{
		int64		remaining;

		CHECK_FOR_INTERRUPTS();

		remaining = until_ms - crm_http_now_ms();
		if (remaining <= 0)
			break;

		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 (long) remaining, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/*
 * crm_http_rate_state
 *		The rate-limit state of one server, created empty on first use.
 *
 * Kept in TopMemoryContext for the backend's life: the window spans
 * statements and transactions.
 */
static CrmRateState *
crm_http_rate_state(Oid serverid)
{
	CrmRateState *st;
	bool		found;

	if (crm_rate_states == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(CrmRateState);
		crm_rate_states = hash_create("crm_fdw rate limits", 8, &ctl,
									  HASH_ELEM | HASH_BLOBS);
	}

	st = (CrmRateState *) hash_search(crm_rate_states, &serverid,
									  HASH_ENTER, &found);
	if (!found)
	{
		st->head = 0;
		st->count = 0;
		st->capacity = 0;
		st->sent_ms = NULL;
		st->hold_until_ms = 0;
		st->recorded = 0;
	}
	return st;
}

/*
 * crm_http_rate_prune
 *		Forget send times that have left the window (plus margin).
 */
static void
crm_http_rate_prune(CrmRateState *st, int64 now)
{
	while (st->count > 0 &&
		   st->sent_ms[st->head] + CRM_RATE_WINDOW_MS + CRM_RATE_MARGIN_MS <= now)
	{
		st->head = (st->head + 1) % st->capacity;
		st->count--;
	}
}

/*
 * crm_http_rate_limit_wait
 *		Wait until one more request to this server fits the sliding window,
 *		then record its send time.
 *
 * With rate_limit_per_minute = N, no window of 60 s + 250 ms may hold more
 * than N sends of this backend: if it already holds N, wait until the oldest
 * relevant one leaves.  A hold set by X-RateLimit-Remaining: 0 is honoured
 * too.  The ring grows only as requests are actually sent, so a large N
 * costs nothing until it is used.
 */
static void
crm_http_rate_limit_wait(CrmConnInfo *conn)
{
	for (;;)
	{
		int64		now = crm_http_now_ms();
		int64		until = crm_http_rate_wait_until(conn, now);

		if (until <= now)
			break;
		elog(DEBUG1, "waiting %lld ms for the rate limit of server \"%s\"",
			 (long long) (until - now), conn->servername);
		crm_http_sleep_until(until);
	}
	crm_http_rate_record(conn);
}

/* When one more request to this server fits the window: 0 if now. */
static int64
crm_http_rate_wait_until(CrmConnInfo *conn, int64 now)
{
	CrmRateState *st = crm_http_rate_state(conn->serverid);
	int			limit = Max(conn->opts.rate_limit_per_minute, 0);
	int64		until = 0;

	crm_http_rate_prune(st, now);
	if (st->hold_until_ms > now)
		until = st->hold_until_ms;
	else if (limit > 0 && st->count >= limit)
		until = st->sent_ms[(st->head + st->count - limit) % st->capacity] +
			CRM_RATE_WINDOW_MS + CRM_RATE_MARGIN_MS;
	return until > now ? until : 0;
}

/* Record a send now. */
static void
crm_http_rate_record(CrmConnInfo *conn)
{
	CrmRateState *st = crm_http_rate_state(conn->serverid);

	st->hold_until_ms = 0;
	crm_http_rate_append(st, conn, crm_http_now_ms());
}

/* Append a send time, growing or recycling the ring as needed. */
static void
crm_http_rate_append(CrmRateState *st, CrmConnInfo *conn, int64 sent_ms)
{
	int			maxcap = crmHttpRateCapacity(conn);

	if (st->count == st->capacity)
	{
		if (st->capacity < maxcap)
		{
			int			newcap = Min(Max(st->capacity * 2, 16), maxcap);
			int64	   *newring;
			int			i;

			newring = MemoryContextAlloc(TopMemoryContext,
										 sizeof(int64) * newcap);
			for (i = 0; i < st->count; i++)
				newring[i] = st->sent_ms[(st->head + i) % st->capacity];
			if (st->sent_ms != NULL)
				pfree(st->sent_ms);
			st->sent_ms = newring;
			st->capacity = newcap;
			st->head = 0;
		}
		else
		{
			/* the oldest send time is out of every window the ring enforces */
			st->head = (st->head + 1) % st->capacity;
			st->count--;
		}
	}
	st->sent_ms[(st->head + st->count) % st->capacity] = sent_ms;
	st->count++;
	st->recorded++;
}

/*
 * The most send times kept for conn's server: its limit per minute (all a
 * window can hold), or CRM_RATE_RING_UNLIMITED without a limit.
 */
int
crmHttpRateCapacity(const CrmConnInfo *conn)
{
	return conn->opts.rate_limit_per_minute > 0 ? conn->opts.rate_limit_per_minute
		: CRM_RATE_RING_UNLIMITED;
}

/*
 * crmHttpRateExport
 *		The sends to conn's server recorded after the first *seen of them
 *		(oldest first, at most max; the ring keeps the newest), and the hold.
 *		Advances *seen.  With crmHttpRateImport, the sync process and its
 *		fetcher share one rate-limit window (clock: CLOCK_MONOTONIC, the
 *		same in every process of the machine).
 */
int
crmHttpRateExport(CrmConnInfo *conn, int64 *seen, int64 *sent_ms, int max,
				  int64 *hold_until_ms)
{
	CrmRateState *st = crm_http_rate_state(conn->serverid);
	int			n = (int) Min(Min(st->recorded - *seen, (int64) st->count), (int64) max);
	int			i;

	for (i = 0; i < n; i++)
		sent_ms[i] = st->sent_ms[(st->head + st->count - n + i) % st->capacity];
	*seen = st->recorded;
	*hold_until_ms = st->hold_until_ms;
	return n;
}

/* Take sends (oldest first) and the hold another process exported. */
void
crmHttpRateImport(CrmConnInfo *conn, const int64 *sent_ms, int n,
				  int64 hold_until_ms)
{
	CrmRateState *st = crm_http_rate_state(conn->serverid);
	int			i;

	for (i = 0; i < n; i++)
		crm_http_rate_append(st, conn, sent_ms[i]);
	st->hold_until_ms = hold_until_ms;
}

/*
 * crm_http_rate_note_headers
 *		After a response, honour X-RateLimit-Remaining: 0 by holding the next
 *		request to this server until the server's window has likely passed.
 *
 * Without this the next request would be refused with a 429; the wait is
 * the same either way, but this saves the refused round trip.  The end of
 * the window is taken from X-RateLimit-Reset when present (epoch seconds or
 * delta seconds), else estimated from the oldest send time in our own window;
 * it is never more than one window away.
 */
static void
crm_http_rate_note_headers(CrmConnInfo *conn)
{
	CrmRateState *st;
	int64		remaining;
	int64		reset;
	int64		now;
	int64		hold;

	if (!crm_http_header_int64("X-RateLimit-Remaining", &remaining) ||
		remaining != 0)
		return;

	st = crm_http_rate_state(conn->serverid);
	now = crm_http_now_ms();

	if (crm_http_header_int64("X-RateLimit-Reset", &reset))
	{
		/* large values are epoch seconds, small ones a delay in seconds */
		if (reset > 1000000000)
			reset -= (int64) time(NULL);
		hold = now + Max(reset, 0) * 1000 + CRM_RATE_MARGIN_MS;
	}
	else if (st->count > 0)
		hold = st->sent_ms[st->head] + CRM_RATE_WINDOW_MS + CRM_RATE_MARGIN_MS;
	else
		hold = now + CRM_RATE_WINDOW_MS + CRM_RATE_MARGIN_MS;

	hold = Min(hold, now + CRM_RATE_WINDOW_MS + CRM_RATE_MARGIN_MS);
	if (hold > st->hold_until_ms)
		st->hold_until_ms = hold;

	elog(DEBUG2, "server \"%s\" reports no remaining requests; holding the next one for %lld ms",
		 conn->servername, (long long) (st->hold_until_ms - now));
}

/*
 * crm_http_header_int64
 *		Read a response header of the last request as a non-negative integer.
 *
 * Returns false when the header is absent or not a plain number.  The value
 * libcurl hands back is NUL-terminated; it is parsed without trusting its
 * length.
 */
static bool
crm_http_header_int64(const char *name, int64 *value)
{
	struct curl_header *h;
	const char *v;
	int64		n = 0;

	if (curl_easy_header(crm_easy, name, 0, CURLH_HEADER, -1,
						 &h) != CURLHE_OK || h->value == NULL)
		return false;

	v = h->value;
	while (*v == ' ' || *v == '\t')
		v++;
	if (!(*v >= '0' && *v <= '9'))
		return false;
	while (*v >= '0' && *v <= '9')
	{
		if (n > (PG_INT64_MAX - 9) / 10)
			return false;
		n = n * 10 + (*v - '0');
		v++;
	}
	while (*v == ' ' || *v == '\t')
		v++;
	if (*v != '\0')
		return false;

	*value = n;
	return true;
}

/*
 * crm_http_clean_text
 *		A palloc'd copy of remote text fit for an error detail.
 *
 * Remote text may hold control characters, bytes invalid in the database
 * encoding, or a whole web page: whitespace runs become one space, other
 * control characters are dropped, non-ASCII survives only when it is valid
 * and the database is UTF-8 (else '?'), and the result is clipped at a
 * character boundary to maxlen bytes with "..." appended.
 */
static char *
crm_http_clean_text(const char *s, size_t len, size_t maxlen)
{
	StringInfoData out;
	bool		keep_utf8;
	bool		in_space = false;
	size_t		i;

	keep_utf8 = GetDatabaseEncoding() == PG_UTF8 &&
		pg_verifymbstr(s, (int) Min(len, (size_t) INT_MAX), true);

	initStringInfo(&out);
	for (i = 0; i < len && (size_t) out.len <= maxlen; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
		{
			if (!in_space && out.len > 0)
				appendStringInfoChar(&out, ' ');
			in_space = true;
			continue;
		}
		in_space = false;
		if (c < 0x20 || c == 0x7F)
			continue;
		if (c >= 0x80 && !keep_utf8)
			c = '?';
		appendStringInfoChar(&out, (char) c);
	}

	/* drop a trailing space */
	if (out.len > 0 && out.data[out.len - 1] == ' ')
		out.data[--out.len] = '\0';

	if ((size_t) out.len > maxlen)
	{
		int			cut = keep_utf8 ?
			pg_mbcliplen(out.data, out.len, (int) maxlen) : (int) maxlen;

		out.data[cut] = '\0';
		out.len = cut;
		appendStringInfoString(&out, "...");
	}
	return out.data;
}

/*
 * crm_http_json_excerpt
 *		A cleaned, compact, palloc'd rendering of a JSON value.
 *
 * json_dumps allocates with jansson's allocator (see
 * crmJsonUseMemoryContexts), so the result is freed with jansson's own free
 * function.
 */
static char *
crm_http_json_excerpt(json_t *value)
{
	json_malloc_t malloc_fn;
	json_free_t free_fn;
	char	   *dump;
	char	   *result;

	dump = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
	if (dump == NULL)
		return NULL;
	result = crm_http_clean_text(dump, strlen(dump), CRM_HTTP_DETAIL_MAX);
	json_get_alloc_funcs(&malloc_fn, &free_fn);
	free_fn(dump);
	return result;
}

/*
 * crm_http_describe_body
 *		An errdetail sentence for a failed response: the API's "message"
 *		(and its "errors" object when with_errors), the title of an HTML
 *		error page, or a short excerpt of any other text.
 *
 * The body is the remote server's text, so the caller passes the result
 * through errdetail_internal.  The jansson document is freed here, before
 * any ERROR can be raised.
 */
static char *
crm_http_describe_body(long status, bool with_errors)
{
	const char *data = crm_body.data;
	size_t		len = crm_body.len;
	size_t		skip = 0;

	while (skip < len && (data[skip] == ' ' || data[skip] == '\t' ||
						  data[skip] == '\n' || data[skip] == '\r'))
		skip++;
	if (skip == len)
		return psprintf("Remote server answered HTTP %ld with an empty body.",
						status);

	if (data[skip] == '{' || data[skip] == '[')
	{
		json_error_t jerr;
		json_t	   *root = json_loadb(data, len, 0, &jerr);

		if (root != NULL)
		{
			char	   *message = NULL;
			char	   *errors = NULL;
			char	   *result;

			if (json_is_object(root))
			{
				json_t	   *m = json_object_get(root, "message");
				json_t	   *e = json_object_get(root, "errors");

				if (json_is_string(m))
					message = crm_http_clean_text(json_string_value(m),
												  json_string_length(m),
												  CRM_HTTP_DETAIL_MAX);
				if (with_errors && e != NULL && !json_is_null(e))
					errors = crm_http_json_excerpt(e);
			}
			if (message == NULL && errors == NULL)
				message = crm_http_json_excerpt(root);
			json_decref(root);

			if (message != NULL && errors != NULL)
				result = psprintf("Remote server answered HTTP %ld: %s Errors: %s",
								  status, message, errors);
			else if (errors != NULL)
				result = psprintf("Remote server answered HTTP %ld. Errors: %s",
								  status, errors);
			else if (message != NULL)
				result = psprintf("Remote server answered HTTP %ld: %s",
								  status, message);
			else
				result = psprintf("Remote server answered HTTP %ld.", status);
			return result;
		}
	}

	if (data[skip] == '<')
	{
		size_t		i;

		/* an HTML error page: its <title> says all that is useful */
		for (i = skip; i + 7 <= len; i++)
		{
			if (pg_strncasecmp(data + i, "<title", 6) == 0 &&
				(data[i + 6] == '>' || data[i + 6] == ' '))
			{
				size_t		start = i + 6;
				size_t		end;

				while (start < len && data[start] != '>')
					start++;
				start++;
				for (end = start; end + 8 <= len; end++)
				{
					if (pg_strncasecmp(data + end, "</title>", 8) == 0)
						break;
				}
				if (start < len && end + 8 <= len && end > start)
					return psprintf("Remote server answered HTTP %ld with an HTML page titled \"%s\".",
									status,
									crm_http_clean_text(data + start,
														end - start, 200));
				break;
			}
		}
		return psprintf("Remote server answered HTTP %ld with an HTML page.",
						status);
	}

	return psprintf("Remote server answered HTTP %ld: %s", status,
					crm_http_clean_text(data + skip, len - skip, 200));
}

/*
 * crm_http_raise_curl_error
 *		Raise the ERROR for a transfer that libcurl could not complete.
 *
 * A response over max_response_bytes and an out-of-memory in the write
 * callback get their own errors; everything else means the server could not
 * be reached or stopped answering.  The detail is libcurl's error buffer,
 * which names hosts and timings but, with bearer authentication, never the
 * token.
 */
static void
crm_http_raise_curl_error(CrmConnInfo *conn, const char *path, CURLcode rc,
						  int attempts)
{
	char	   *detail;
	bool		retryable = crm_http_retryable_curl(rc);

	if (crm_body.too_big || rc == CURLE_FILESIZE_EXCEEDED)
	{
		crm_http_discard_body();
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("response from %s exceeds max_response_bytes (%lld)",
						path, (long long) conn->opts.max_response_bytes),
				 errhint("Raise the max_response_bytes option of server \"%s\", or lower its page_size option.",
						 conn->servername)));
	}
	if (crm_body.oom)
	{
		crm_http_discard_body();
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OUT_OF_MEMORY),
				 errmsg("out of memory while receiving the response to GET %s",
						path)));
	}
	crm_http_discard_body();

	detail = pstrdup(crm_errbuf[0] != '\0' ? crm_errbuf : curl_easy_strerror(rc));

	crm_failed_timeout = (rc == CURLE_OPERATION_TIMEDOUT);
	if (rc == CURLE_OPERATION_TIMEDOUT)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
				 errmsg_plural("GET %s to server \"%s\" timed out after %d attempt",
							   "GET %s to server \"%s\" timed out after %d attempts",
							   attempts, path, conn->servername, attempts),
				 errdetail_internal("%s", detail),
				 errhint("Raise the timeout_ms or connect_timeout_ms option of server \"%s\" if the remote server is slow to answer.",
						 conn->servername)));

	if (rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE ||
		rc == CURLE_SSL_CONNECT_ERROR || rc == CURLE_SSL_CERTPROBLEM)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
				 errmsg("could not establish a TLS connection to server \"%s\" for GET %s",
						conn->servername, path),
				 errdetail_internal("%s", detail),
				 errhint("Check the url, ca_file and ssl_verify options of server \"%s\".",
						 conn->servername)));

	if (retryable)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
				 errmsg_plural("could not GET %s from server \"%s\" after %d attempt",
							   "could not GET %s from server \"%s\" after %d attempts",
							   attempts, path, conn->servername, attempts),
				 errdetail_internal("%s", detail),
				 errhint("Check the url option of server \"%s\" and that the remote server is reachable.",
						 conn->servername)));

	ereport(ERROR,
			(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
			 errmsg("could not GET %s from server \"%s\"",
					path, conn->servername),
			 errdetail_internal("%s", detail),
			 errhint("Check the url option of server \"%s\".",
					 conn->servername)));
}

/*
 * The HTTP status that failed the last crmHttpGet, after its retries; 0 when
 * it succeeded or failed otherwise (network, timeout, cancel).
 */
long
crmHttpFailedStatus(void)
{
	return crm_failed_status;
}

/* Whether the last crmHttpGet failed by timing out, after its retries. */
bool
crmHttpTimedOut(void)
{
	return crm_failed_timeout;
}

/*
 * crm_http_raise_status_error
 *		Raise the ERROR for an HTTP status that is not a success, after the
 *		retries it deserved.
 *
 * Authentication failures use SQLSTATE 28000 (invalid authorization
 * specification), as PostgreSQL does for a rejected password, so callers and
 * the sync log can tell a bad user mapping (fix it, do not retry) from an
 * unreachable server (HV00N).
 */
static void
crm_http_raise_status_error(CrmConnInfo *conn, const char *path, long status,
							int attempts)
{
	char	   *detail = crm_http_describe_body(status, status == 422);

	crm_failed_status = status;
	crm_http_discard_body();

	if (status == 401 || status == 403)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("remote server rejected the API token for GET %s",
						path),
				 errdetail_internal("%s", detail),
				 errhint("Check the token option of the user mapping for server \"%s\".",
						 conn->servername)));

	if (status == 404)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_TABLE_NOT_FOUND),
				 errmsg("remote resource %s not found", path),
				 errdetail_internal("%s", detail),
				 errhint("Check the url option of server \"%s\".",
						 conn->servername)));

	if (status == 422)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("remote server rejected the query parameters of GET %s",
						path),
				 errdetail_internal("%s", detail),
				 errhint("A condition sent to the remote server holds a value the API does not accept.")));

	if (status == 429)
	{
		if (conn->opts.rate_limit_per_minute > 0)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_ERROR),
					 errmsg("remote rate limit exceeded for GET %s", path),
					 errdetail_internal("%s", detail),
					 errhint("Lower the rate_limit_per_minute option of server \"%s\" (now %d), or raise its max_retries option.",
							 conn->servername,
							 conn->opts.rate_limit_per_minute)));
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("remote rate limit exceeded for GET %s", path),
				 errdetail_internal("%s", detail),
				 errhint("Set the rate_limit_per_minute option of server \"%s\" (the API allows 60 requests per minute per token), or raise its max_retries option.",
						 conn->servername)));
	}

	if (status >= 500 && status <= 599)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg_plural("remote server returned HTTP %ld for GET %s after %d attempt",
							   "remote server returned HTTP %ld for GET %s after %d attempts",
							   attempts, status, path, attempts),
				 errdetail_internal("%s", detail),
				 errhint("The remote server may be down or overloaded; try again later, or raise the max_retries option of server \"%s\".",
						 conn->servername)));

	ereport(ERROR,
			(errcode(ERRCODE_FDW_ERROR),
			 errmsg("remote server returned unexpected HTTP status %ld for GET %s",
					status, path),
			 errdetail_internal("%s", detail)));
}
