/*
 * dmsc.h: the C API of the dmsc service mesh (libdmsc).
 *
 * Link with -ldmsc (`python -m dmsc.capi --cflags --libs` or `pkg-config dmsc`).
 * libdmsc needs no Python at run time.
 *
 * Ownership and errors
 *   - Objects are opaque. Every *_new has a *_free; *_free(NULL) does nothing.
 *   - Functions returning int give DMSC_OK (0) on success and a negative DMSC_ERR_* code on
 *     failure; dmsc_last_error_message() then says why (per thread, valid until the next
 *     failure on that thread). Functions returning a pointer give NULL on failure; getters of
 *     counts give 0.
 *   - NULL or invalid arguments never crash the library: they return DMSC_ERR_NULL_POINTER or
 *     DMSC_ERR_INVALID_ARGUMENT.
 *   - Strings passed in are copied. Strings returned by getters belong to the object and stay
 *     valid until the object changes or is freed: do not free them.
 *   - dmsc_service_mesh_register copies the endpoint: the caller still owns and frees it.
 *   - dmsc_service_mesh_discover returns a new endpoint that the caller frees.
 *
 * Thread safety
 *   - A DMSCServiceMesh may be used by any number of threads at once (registration,
 *     discovery, recording, reload). Balancing decisions and counters are thread-safe and
 *     lock-free on the discovery path.
 *   - A DMSCServiceMeshConfig or DMSCServiceEndpoint is used by one thread at a time.
 */
#ifndef DMSC_H
#define DMSC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status codes ---------------------------------------------------------------------- */

#define DMSC_OK 0
/* A required pointer argument was NULL. */
#define DMSC_ERR_NULL_POINTER (-1)
/* An argument was out of range or malformed (the message names it). */
#define DMSC_ERR_INVALID_ARGUMENT (-2)
/* No such service or instance, or no healthy instance of the service. */
#define DMSC_ERR_NOT_FOUND (-3)
/* The call does not fit the object's state (e.g. starting a running mesh). */
#define DMSC_ERR_STATE (-4)
/* The feature was compiled out of this build of the library (see dmsc_features). */
#define DMSC_ERR_UNSUPPORTED (-5)
/* An operating-system resource (thread, socket) could not be obtained. */
#define DMSC_ERR_IO (-6)
/* A bug inside the library was caught at the boundary. */
#define DMSC_ERR_INTERNAL (-99)

/* The reason for the last failure on this thread ("" if none). Do not free. */
const char *dmsc_last_error_message(void);

/* The library version, e.g. "0.1.0". Do not free. */
const char *dmsc_version(void);

/* ---- features -------------------------------------------------------------------------- */

#define DMSC_FEATURE_SERVICE_MESH (1u << 0)    /* "service-mesh" */
#define DMSC_FEATURE_MTLS (1u << 1)            /* "service-mesh-mtls" */
#define DMSC_FEATURE_CIRCUIT_BREAKER (1u << 2) /* "service-mesh-circuit-breaker" */
#define DMSC_FEATURE_TRACING (1u << 3)         /* "service-mesh-tracing" */
#define DMSC_FEATURE_METRICS (1u << 4)         /* "service-mesh-metrics" */
#define DMSC_FEATURE_DNS (1u << 5)             /* "service-mesh-dns" */

/* The DMSC_FEATURE_* bits compiled into this library (the default build has all). */
unsigned int dmsc_features(void);

/* ---- types ----------------------------------------------------------------------------- */

typedef struct DMSCServiceMeshConfig DMSCServiceMeshConfig;
typedef struct DMSCServiceMesh DMSCServiceMesh;
typedef struct DMSCServiceEndpoint DMSCServiceEndpoint;

/* Load-balancing algorithms of discovery. */
enum {
    LB_ROUND_ROBIN = 0,     /* each healthy instance in turn */
    LB_LEAST_REQUESTS = 1,  /* power of two choices over in-flight requests */
    LB_WEIGHTED = 2,        /* smooth weighted round robin over endpoint weights */
    LB_CONSISTENT_HASH = 3, /* Envoy-compatible ring hash on the discovery key */
    LB_RANDOM = 4,          /* uniformly random */
    LB_MAGLEV = 5           /* Envoy-compatible Maglev on the discovery key */
};

/* ---- configuration --------------------------------------------------------------------- */

/* A configuration with the defaults: mTLS off; circuit breaker, tracing and metrics on;
 * failure rate 0.5 over the last 100 calls once 10 were seen; breaker timeout 30000 ms;
 * LB_ROUND_ROBIN; health checks every 5000 ms with a 1000 ms timeout, healthy after 1 pass,
 * unhealthy after 2 failures. NULL if out of memory. */
DMSCServiceMeshConfig *dmsc_service_mesh_config_new(void);
/* Frees a configuration. Meshes keep their own copy, so it may be freed at any time. */
void dmsc_service_mesh_config_free(DMSCServiceMeshConfig *config);

int dmsc_service_mesh_config_set_enable_mtls(DMSCServiceMeshConfig *config, bool enabled);
int dmsc_service_mesh_config_set_enable_circuit_breaker(DMSCServiceMeshConfig *config, bool enabled);
int dmsc_service_mesh_config_set_enable_tracing(DMSCServiceMeshConfig *config, bool enabled);
int dmsc_service_mesh_config_set_enable_metrics(DMSCServiceMeshConfig *config, bool enabled);
/* Failure rate in (0, 1] at which an instance's circuit breaker opens. */
int dmsc_service_mesh_config_set_circuit_breaker_failure_rate(DMSCServiceMeshConfig *config, double rate);
/* How long an open breaker rejects calls before letting trial calls through (ms, >= 1). */
int dmsc_service_mesh_config_set_circuit_breaker_timeout_ms(DMSCServiceMeshConfig *config, uint64_t timeout_ms);
/* Calls needed before the failure rate counts, and the number of recent calls it covers
 * (window >= minimum_calls >= 1). */
int dmsc_service_mesh_config_set_circuit_breaker_window(DMSCServiceMeshConfig *config, uint32_t minimum_calls, uint32_t window);
/* One of the LB_* constants. */
int dmsc_service_mesh_config_set_load_balancing_algorithm(DMSCServiceMeshConfig *config, int lb_algorithm);
/* Interval between two health checks of an instance (ms, >= 1). */
int dmsc_service_mesh_config_set_health_check_interval_ms(DMSCServiceMeshConfig *config, uint64_t interval_ms);
/* Time allowed for one health check (ms, >= 1). */
int dmsc_service_mesh_config_set_health_check_timeout_ms(DMSCServiceMeshConfig *config, uint64_t timeout_ms);
/* Consecutive passes that make an instance healthy, failures that make it unhealthy (>= 1). */
int dmsc_service_mesh_config_set_health_check_thresholds(DMSCServiceMeshConfig *config, uint32_t healthy_threshold, uint32_t unhealthy_threshold);
/* HTTP statuses a health check passes on: count half-open ranges [ranges[2i], ranges[2i+1]),
 * each with 100 <= start < end <= 600, count >= 1 (default {200, 300}: 2xx). */
int dmsc_service_mesh_config_set_health_check_expected_statuses(DMSCServiceMeshConfig *config, const uint16_t *ranges, size_t count);
/* DNS domain of service names for dmsc_service_mesh_resolve (default "dmsc"). */
int dmsc_service_mesh_config_set_domain(DMSCServiceMeshConfig *config, const char *domain);
/* Joins the dmsc controller at address ("http://HOST:PORT" or "HOST:PORT"; NULL or "" =
 * standalone, the default). Such a mesh sends register/deregister to the controller
 * (DMSC_ERR_INVALID_ARGUMENT with the controller's message when it refuses an endpoint,
 * DMSC_ERR_IO when it cannot be reached) and discovers from a local copy of the controller's
 * registry: updated after each of its own writes, and followed in the background between
 * dmsc_service_mesh_start (which fetches it first; DMSC_ERR_IO if unreachable) and
 * dmsc_service_mesh_stop. So native and Python programs, and the controller's DNS, see one
 * registry. Health is checked by the controller, not by this process. */
int dmsc_service_mesh_config_set_controller(DMSCServiceMeshConfig *config, const char *address);

/* Runtime forms taking the mesh: the change is validated at once and staged, and
 * dmsc_service_mesh_reload_config applies every staged change atomically. */
int dmsc_service_mesh_set_circuit_breaker_failure_rate(const DMSCServiceMesh *mesh, double rate);
int dmsc_service_mesh_set_circuit_breaker_timeout_ms(const DMSCServiceMesh *mesh, uint64_t timeout_ms);
int dmsc_service_mesh_set_load_balancing_algorithm(const DMSCServiceMesh *mesh, int lb_algorithm);

/* ---- endpoints ------------------------------------------------------------------------- */

/* An empty endpoint (weight 1). NULL if out of memory. */
DMSCServiceEndpoint *dmsc_service_endpoint_new(void);
/* Frees an endpoint. For a discovered endpoint not yet recorded, this also ends its request. */
void dmsc_service_endpoint_free(DMSCServiceEndpoint *endpoint);

/* Service name: 1-253 letters, digits, '-', '_' or '.' (checked at registration). */
int dmsc_service_endpoint_set_name(DMSCServiceEndpoint *endpoint, const char *name);
const char *dmsc_service_endpoint_get_name(const DMSCServiceEndpoint *endpoint);
/* Host name or IP address the instance listens on. */
int dmsc_service_endpoint_set_host(DMSCServiceEndpoint *endpoint, const char *host);
const char *dmsc_service_endpoint_get_host(const DMSCServiceEndpoint *endpoint);
/* TCP port, 1-65535. */
int dmsc_service_endpoint_set_port(DMSCServiceEndpoint *endpoint, uint16_t port);
uint16_t dmsc_service_endpoint_get_port(const DMSCServiceEndpoint *endpoint);
/* Version of the service the instance runs, e.g. "v1.2.3". */
int dmsc_service_endpoint_set_version(DMSCServiceEndpoint *endpoint, const char *version);
const char *dmsc_service_endpoint_get_version(const DMSCServiceEndpoint *endpoint);
/* Path of the HTTP health check, e.g. "/health" (a GET answered 2xx passes). Empty: the
 * check is a TCP connect. */
int dmsc_service_endpoint_set_health_check_url(DMSCServiceEndpoint *endpoint, const char *url);
const char *dmsc_service_endpoint_get_health_check_url(const DMSCServiceEndpoint *endpoint);
/* Availability zone and cluster of the instance. */
int dmsc_service_endpoint_set_zone(DMSCServiceEndpoint *endpoint, const char *zone);
const char *dmsc_service_endpoint_get_zone(const DMSCServiceEndpoint *endpoint);
int dmsc_service_endpoint_set_cluster(DMSCServiceEndpoint *endpoint, const char *cluster);
const char *dmsc_service_endpoint_get_cluster(const DMSCServiceEndpoint *endpoint);
/* Relative weight for LB_WEIGHTED, LB_CONSISTENT_HASH and LB_MAGLEV (>= 1, default 1). */
int dmsc_service_endpoint_set_weight(DMSCServiceEndpoint *endpoint, uint32_t weight);
uint32_t dmsc_service_endpoint_get_weight(const DMSCServiceEndpoint *endpoint);
/* Free-form labels (at most 64). get_label returns NULL when the key is not set; the string
 * is valid until the next get_label or change of the endpoint. */
int dmsc_service_endpoint_set_label(DMSCServiceEndpoint *endpoint, const char *key, const char *value);
const char *dmsc_service_endpoint_get_label(DMSCServiceEndpoint *endpoint, const char *key);

/* ---- the mesh -------------------------------------------------------------------------- */

/* A stopped mesh with a copy of config. NULL on error (see dmsc_last_error_message). */
DMSCServiceMesh *dmsc_service_mesh_new(const DMSCServiceMeshConfig *config);
/* Stops the mesh if running and frees it. No other thread may still use it. */
void dmsc_service_mesh_free(DMSCServiceMesh *mesh);
/* Starts background health checks of every registered instance (DMSC_ERR_STATE if running). */
int dmsc_service_mesh_start(DMSCServiceMesh *mesh);
/* Stops the background health checks; registrations stay. Idempotent. */
int dmsc_service_mesh_stop(DMSCServiceMesh *mesh);

/* Registers a copy of endpoint after checking its health once, so that healthy counts and
 * discovery reflect it on return. Registering the same name, host and port again updates
 * that instance. DMSC_ERR_INVALID_ARGUMENT names the bad field. */
int dmsc_service_mesh_register(DMSCServiceMesh *mesh, const DMSCServiceEndpoint *endpoint);
/* Removes the instance with endpoint's name, host and port (DMSC_ERR_NOT_FOUND if none). */
int dmsc_service_mesh_deregister(DMSCServiceMesh *mesh, const DMSCServiceEndpoint *endpoint);
/* Number of healthy instances of the service. */
uint32_t dmsc_service_mesh_get_healthy_count(DMSCServiceMesh *mesh, const char *service_name);

/* Picks one healthy instance with the mesh's algorithm and stores a new endpoint in *out,
 * which the caller frees. The request counts as in flight on that instance (for
 * LB_LEAST_REQUESTS) until dmsc_service_mesh_record_request or the endpoint's free.
 * With the circuit breaker on, instances whose breaker is open are skipped.
 * DMSC_ERR_NOT_FOUND (and *out = NULL) when no healthy instance is available. */
int dmsc_service_mesh_discover(DMSCServiceMesh *mesh, const char *service_name, DMSCServiceEndpoint **out);
/* As dmsc_service_mesh_discover, with key_len bytes at key steering LB_CONSISTENT_HASH and
 * LB_MAGLEV (the same key reaches the same instance while the healthy set is unchanged).
 * key may be NULL: the hash balancers then pick at random. */
int dmsc_service_mesh_discover_with_key(DMSCServiceMesh *mesh, const char *service_name, const uint8_t *key, size_t key_len, DMSCServiceEndpoint **out);
/* As dmsc_service_mesh_discover, among the healthy instances running version (canary and
 * blue-green callers pick a version explicitly). */
int dmsc_service_mesh_discover_version(DMSCServiceMesh *mesh, const char *service_name, const char *version, DMSCServiceEndpoint **out);
/* Discovers by DNS-style name: "<service>.service.<domain>" or
 * "<version>.<service>.service.<domain>" (a trailing dot is allowed). Feature
 * "service-mesh-dns"; DMSC_ERR_UNSUPPORTED when compiled out. */
int dmsc_service_mesh_resolve(DMSCServiceMesh *mesh, const char *dns_name, DMSCServiceEndpoint **out);
/* Reports the outcome and duration (microseconds) of one request to endpoint: a discovered
 * endpoint, or one naming a registered instance. Feeds the counters, the instance's circuit
 * breaker and least-request balancing. */
int dmsc_service_mesh_record_request(DMSCServiceMesh *mesh, DMSCServiceEndpoint *endpoint, bool success, uint64_t latency_us);

/* Size of a buffer for a W3C traceparent value with its NUL. */
#define DMSC_TRACEPARENT_SIZE 56
/* Writes the W3C traceparent header value for an outgoing call into out (out_len >=
 * DMSC_TRACEPARENT_SIZE): a child span of incoming (the traceparent the caller received),
 * or a new sampled trace when incoming is NULL. DMSC_ERR_INVALID_ARGUMENT for a malformed
 * incoming value (call again with NULL to start a new trace); DMSC_ERR_STATE when tracing is
 * off. Feature "service-mesh-tracing". */
int dmsc_service_mesh_trace_context(DMSCServiceMesh *mesh, const char *incoming, char *out, size_t out_len);

/* Applies the changes staged with the dmsc_service_mesh_set_* forms, atomically. Registrations,
 * health and counters are kept. */
int dmsc_service_mesh_reload_config(DMSCServiceMesh *mesh);
/* Requests recorded, and failed requests recorded, since the mesh was created. */
uint64_t dmsc_service_mesh_get_total_requests(DMSCServiceMesh *mesh);
uint64_t dmsc_service_mesh_get_failed_requests(DMSCServiceMesh *mesh);

#ifdef __cplusplus
} /* extern "C" */

/* C++: the configuration setters also accept a running mesh (staged until reload). */
inline int dmsc_service_mesh_config_set_circuit_breaker_failure_rate(DMSCServiceMesh *mesh, double rate) {
    return dmsc_service_mesh_set_circuit_breaker_failure_rate(mesh, rate);
}
inline int dmsc_service_mesh_config_set_circuit_breaker_timeout_ms(DMSCServiceMesh *mesh, uint64_t timeout_ms) {
    return dmsc_service_mesh_set_circuit_breaker_timeout_ms(mesh, timeout_ms);
}
inline int dmsc_service_mesh_config_set_load_balancing_algorithm(DMSCServiceMesh *mesh, int lb_algorithm) {
    return dmsc_service_mesh_set_load_balancing_algorithm(mesh, lb_algorithm);
}

#elif defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L

/* C11: the configuration setters also accept a running mesh (staged until reload), so that
 * dmsc_service_mesh_config_set_circuit_breaker_failure_rate(mesh, 0.3) followed by
 * dmsc_service_mesh_reload_config(mesh) changes a running mesh. Taking the function's address
 * or calling it as (dmsc_service_mesh_config_set_...)(config, value) bypasses the dispatch. */
#define dmsc_service_mesh_config_set_circuit_breaker_failure_rate(target, rate)             \
    _Generic((target),                                                                     \
        DMSCServiceMesh *: dmsc_service_mesh_set_circuit_breaker_failure_rate,             \
        const DMSCServiceMesh *: dmsc_service_mesh_set_circuit_breaker_failure_rate,       \
        default: dmsc_service_mesh_config_set_circuit_breaker_failure_rate)((target), (rate))
#define dmsc_service_mesh_config_set_circuit_breaker_timeout_ms(target, timeout_ms)         \
    _Generic((target),                                                                     \
        DMSCServiceMesh *: dmsc_service_mesh_set_circuit_breaker_timeout_ms,               \
        const DMSCServiceMesh *: dmsc_service_mesh_set_circuit_breaker_timeout_ms,         \
        default: dmsc_service_mesh_config_set_circuit_breaker_timeout_ms)((target), (timeout_ms))
#define dmsc_service_mesh_config_set_load_balancing_algorithm(target, lb_algorithm)         \
    _Generic((target),                                                                     \
        DMSCServiceMesh *: dmsc_service_mesh_set_load_balancing_algorithm,                 \
        const DMSCServiceMesh *: dmsc_service_mesh_set_load_balancing_algorithm,           \
        default: dmsc_service_mesh_config_set_load_balancing_algorithm)((target), (lb_algorithm))

#endif

#endif /* DMSC_H */
