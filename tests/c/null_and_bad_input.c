/* Every function of dmsc.h called with NULL and with bad values: no crash, the documented
 * error codes, a message for each failure. Exits non-zero on the first surprise. */
#include <stdio.h>
#include <string.h>

#include "dmsc.h"
#include "expect.h"


/* The call failed with `code` and left a non-empty message. */
#define EXPECT_ERR(call, code)                                                \
    do {                                                                      \
        int rc_ = (call);                                                     \
        EXPECT(rc_ == (code));                                                \
        EXPECT(strlen(dmsc_last_error_message()) > 0);                        \
    } while (0)

int main(void) {
    /* Frees accept NULL. */
    dmsc_service_mesh_config_free(NULL);
    dmsc_service_mesh_free(NULL);
    dmsc_service_endpoint_free(NULL);

    /* Config setters with a NULL config. */
    EXPECT_ERR(dmsc_service_mesh_config_set_enable_mtls(NULL, true), DMSC_ERR_NULL_POINTER);
    EXPECT_ERR(dmsc_service_mesh_config_set_enable_circuit_breaker(NULL, true), DMSC_ERR_NULL_POINTER);
    EXPECT_ERR(dmsc_service_mesh_config_set_enable_tracing(NULL, true), DMSC_ERR_NULL_POINTER);
    EXPECT_ERR(dmsc_service_mesh_config_set_enable_metrics(NULL, true), DMSC_ERR_NULL_POINTER);
    EXPECT_ERR((dmsc_service_mesh_config_set_circuit_breaker_failure_rate)(NULL, 0.5), DMSC_ERR_NULL_POINTER);
    EXPECT_ERR((dmsc_service_mesh_config_set_circuit_breaker_timeout_ms)(NULL, 10), DMSC_ERR_NULL_POINTER);
    EXPECT_ERR(dmsc_service_mesh_config_set_circuit_breaker_window(NULL, 1, 1), DMSC_ERR_NULL_POINTER);
    EXPECT_ERR((dmsc_service_mesh_config_set_load_balancing_algorithm)(NULL, LB_RANDOM), DMSC_ERR_NULL_POINTER);
    EXPECT_ERR(dmsc_service_mesh_config_set_health_check_interval_ms(NULL, 10), DMSC_ERR_NULL_POINTER);
    EXPECT_ERR(dmsc_service_mesh_config_set_health_check_timeout_ms(NULL, 10), DMSC_ERR_NULL_POINTER);
    EXPECT_ERR(dmsc_service_mesh_config_set_health_check_thresholds(NULL, 1, 1), DMSC_ERR_NULL_POINTER);
    const uint16_t two_xx[] = {200, 300};
    EXPECT_ERR(dmsc_service_mesh_config_set_health_check_expected_statuses(NULL, two_xx, 1), DMSC_ERR_NULL_POINTER);
    EXPECT_ERR(dmsc_service_mesh_set_circuit_breaker_failure_rate(NULL, 0.5), DMSC_ERR_NULL_POINTER);
    EXPECT_ERR(dmsc_service_mesh_set_circuit_breaker_timeout_ms(NULL, 10), DMSC_ERR_NULL_POINTER);
    EXPECT_ERR(dmsc_service_mesh_set_load_balancing_algorithm(NULL, LB_RANDOM), DMSC_ERR_NULL_POINTER);

    /* Config setters with bad values leave the config usable and unchanged. */
    DMSCServiceMeshConfig *config = dmsc_service_mesh_config_new();
    EXPECT(config != NULL);
    EXPECT_ERR(dmsc_service_mesh_config_set_circuit_breaker_failure_rate(config, 0.0), DMSC_ERR_INVALID_ARGUMENT);
    EXPECT(strstr(dmsc_last_error_message(), "failure_rate") != NULL);
    EXPECT_ERR(dmsc_service_mesh_config_set_circuit_breaker_failure_rate(config, 1.5), DMSC_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(dmsc_service_mesh_config_set_circuit_breaker_failure_rate(config, 0.0 / 0.0), DMSC_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(dmsc_service_mesh_config_set_circuit_breaker_timeout_ms(config, 0), DMSC_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(dmsc_service_mesh_config_set_circuit_breaker_window(config, 0, 10), DMSC_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(dmsc_service_mesh_config_set_circuit_breaker_window(config, 10, 5), DMSC_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(dmsc_service_mesh_config_set_load_balancing_algorithm(config, 6), DMSC_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(dmsc_service_mesh_config_set_load_balancing_algorithm(config, -1), DMSC_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(dmsc_service_mesh_config_set_health_check_interval_ms(config, 0), DMSC_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(dmsc_service_mesh_config_set_health_check_timeout_ms(config, 0), DMSC_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(dmsc_service_mesh_config_set_health_check_thresholds(config, 0, 1), DMSC_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(dmsc_service_mesh_config_set_health_check_expected_statuses(config, NULL, 1), DMSC_ERR_NULL_POINTER);
    EXPECT_ERR(dmsc_service_mesh_config_set_health_check_expected_statuses(config, two_xx, 0), DMSC_ERR_INVALID_ARGUMENT);
    EXPECT(strstr(dmsc_last_error_message(), "health_check_expected_statuses") != NULL);
    const uint16_t backwards[] = {200, 300, 400, 300};
    EXPECT_ERR(dmsc_service_mesh_config_set_health_check_expected_statuses(config, backwards, 2), DMSC_ERR_INVALID_ARGUMENT);
    const uint16_t too_high[] = {200, 601};
    EXPECT_ERR(dmsc_service_mesh_config_set_health_check_expected_statuses(config, too_high, 1), DMSC_ERR_INVALID_ARGUMENT);
    const uint16_t too_low[] = {99, 200};
    EXPECT_ERR(dmsc_service_mesh_config_set_health_check_expected_statuses(config, too_low, 1), DMSC_ERR_INVALID_ARGUMENT);
    const uint16_t up_to_3xx[] = {200, 400};
    EXPECT(dmsc_service_mesh_config_set_health_check_expected_statuses(config, up_to_3xx, 1) == DMSC_OK);
    EXPECT(dmsc_service_mesh_config_set_circuit_breaker_failure_rate(config, 1.0) == DMSC_OK);

    /* Endpoint functions with NULL. */
    EXPECT_ERR(dmsc_service_endpoint_set_name(NULL, "a"), DMSC_ERR_NULL_POINTER);
    EXPECT_ERR(dmsc_service_endpoint_set_host(NULL, "a"), DMSC_ERR_NULL_POINTER);
    EXPECT_ERR(dmsc_service_endpoint_set_port(NULL, 1), DMSC_ERR_NULL_POINTER);
    EXPECT_ERR(dmsc_service_endpoint_set_version(NULL, "a"), DMSC_ERR_NULL_POINTER);
    EXPECT_ERR(dmsc_service_endpoint_set_health_check_url(NULL, "/"), DMSC_ERR_NULL_POINTER);
    EXPECT_ERR(dmsc_service_endpoint_set_zone(NULL, "a"), DMSC_ERR_NULL_POINTER);
    EXPECT_ERR(dmsc_service_endpoint_set_cluster(NULL, "a"), DMSC_ERR_NULL_POINTER);
    EXPECT_ERR(dmsc_service_endpoint_set_weight(NULL, 1), DMSC_ERR_NULL_POINTER);
    EXPECT_ERR(dmsc_service_endpoint_set_label(NULL, "k", "v"), DMSC_ERR_NULL_POINTER);
    EXPECT(dmsc_service_endpoint_get_name(NULL) == NULL);
    EXPECT(dmsc_service_endpoint_get_host(NULL) == NULL);
    EXPECT(dmsc_service_endpoint_get_port(NULL) == 0);
    EXPECT(dmsc_service_endpoint_get_version(NULL) == NULL);
    EXPECT(dmsc_service_endpoint_get_health_check_url(NULL) == NULL);
    EXPECT(dmsc_service_endpoint_get_zone(NULL) == NULL);
    EXPECT(dmsc_service_endpoint_get_cluster(NULL) == NULL);
    EXPECT(dmsc_service_endpoint_get_weight(NULL) == 0);
    EXPECT(dmsc_service_endpoint_get_label(NULL, "k") == NULL);

    DMSCServiceEndpoint *endpoint = dmsc_service_endpoint_new();
    EXPECT(endpoint != NULL);
    EXPECT(strcmp(dmsc_service_endpoint_get_name(endpoint), "") == 0);
    EXPECT_ERR(dmsc_service_endpoint_set_name(endpoint, NULL), DMSC_ERR_NULL_POINTER);
    EXPECT_ERR(dmsc_service_endpoint_set_host(endpoint, "\xff\xfe"), DMSC_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(dmsc_service_endpoint_set_weight(endpoint, 0), DMSC_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(dmsc_service_endpoint_set_label(endpoint, "", "v"), DMSC_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(dmsc_service_endpoint_set_label(endpoint, "k", NULL), DMSC_ERR_NULL_POINTER);
    EXPECT(dmsc_service_endpoint_get_label(endpoint, NULL) == NULL);
    EXPECT(dmsc_service_endpoint_set_label(endpoint, "zone", "a") == DMSC_OK);
    EXPECT(strcmp(dmsc_service_endpoint_get_label(endpoint, "zone"), "a") == 0);
    EXPECT(dmsc_service_endpoint_get_label(endpoint, "missing") == NULL);

    /* Mesh functions with NULL. */
    DMSCServiceEndpoint *out = (DMSCServiceEndpoint *)1;
    EXPECT(dmsc_service_mesh_new(NULL) == NULL);
    EXPECT_ERR(dmsc_service_mesh_start(NULL), DMSC_ERR_NULL_POINTER);
    EXPECT_ERR(dmsc_service_mesh_stop(NULL), DMSC_ERR_NULL_POINTER);
    EXPECT_ERR(dmsc_service_mesh_register(NULL, endpoint), DMSC_ERR_NULL_POINTER);
    EXPECT_ERR(dmsc_service_mesh_deregister(NULL, endpoint), DMSC_ERR_NULL_POINTER);
    EXPECT(dmsc_service_mesh_get_healthy_count(NULL, "a") == 0);
    EXPECT_ERR(dmsc_service_mesh_discover(NULL, "a", &out), DMSC_ERR_NULL_POINTER);
    EXPECT(out == NULL);
    EXPECT_ERR(dmsc_service_mesh_discover_with_key(NULL, "a", NULL, 0, &out), DMSC_ERR_NULL_POINTER);
    EXPECT_ERR(dmsc_service_mesh_record_request(NULL, endpoint, true, 1), DMSC_ERR_NULL_POINTER);
    EXPECT_ERR(dmsc_service_mesh_reload_config(NULL), DMSC_ERR_NULL_POINTER);
    EXPECT(dmsc_service_mesh_get_total_requests(NULL) == 0);
    EXPECT(dmsc_service_mesh_get_failed_requests(NULL) == 0);

    DMSCServiceMesh *mesh = dmsc_service_mesh_new(config);
    EXPECT(mesh != NULL);
    EXPECT_ERR(dmsc_service_mesh_register(mesh, NULL), DMSC_ERR_NULL_POINTER);
    EXPECT_ERR(dmsc_service_mesh_deregister(mesh, NULL), DMSC_ERR_NULL_POINTER);
    EXPECT(dmsc_service_mesh_get_healthy_count(mesh, NULL) == 0);
    EXPECT_ERR(dmsc_service_mesh_discover(mesh, NULL, &out), DMSC_ERR_NULL_POINTER);
    EXPECT_ERR(dmsc_service_mesh_discover(mesh, "a", NULL), DMSC_ERR_NULL_POINTER);
    EXPECT_ERR(dmsc_service_mesh_record_request(mesh, NULL, true, 1), DMSC_ERR_NULL_POINTER);

    /* Bad registrations name the field and register nothing. */
    EXPECT_ERR(dmsc_service_mesh_register(mesh, endpoint), DMSC_ERR_INVALID_ARGUMENT);
    EXPECT(strstr(dmsc_last_error_message(), "name") != NULL);
    dmsc_service_endpoint_set_name(endpoint, "bad name");
    EXPECT_ERR(dmsc_service_mesh_register(mesh, endpoint), DMSC_ERR_INVALID_ARGUMENT);
    dmsc_service_endpoint_set_name(endpoint, "svc");
    EXPECT_ERR(dmsc_service_mesh_register(mesh, endpoint), DMSC_ERR_INVALID_ARGUMENT);
    EXPECT(strstr(dmsc_last_error_message(), "host") != NULL);
    dmsc_service_endpoint_set_host(endpoint, "127.0.0.1");
    EXPECT_ERR(dmsc_service_mesh_register(mesh, endpoint), DMSC_ERR_INVALID_ARGUMENT);
    EXPECT(strstr(dmsc_last_error_message(), "port") != NULL);
    dmsc_service_endpoint_set_port(endpoint, 9);
    dmsc_service_endpoint_set_health_check_url(endpoint, "no-slash");
    EXPECT_ERR(dmsc_service_mesh_register(mesh, endpoint), DMSC_ERR_INVALID_ARGUMENT);
    EXPECT(strstr(dmsc_last_error_message(), "health_check_url") != NULL);
    EXPECT(dmsc_service_mesh_get_healthy_count(mesh, "svc") == 0);

    /* Unknown services and instances. */
    EXPECT_ERR(dmsc_service_mesh_discover(mesh, "nobody", &out), DMSC_ERR_NOT_FOUND);
    EXPECT(out == NULL);
    EXPECT_ERR(dmsc_service_mesh_deregister(mesh, endpoint), DMSC_ERR_NOT_FOUND);
    EXPECT_ERR(dmsc_service_mesh_record_request(mesh, endpoint, false, 1), DMSC_ERR_NOT_FOUND);

    /* Mesh-form setters refuse bad values at once and never reach the live config. */
    EXPECT_ERR(dmsc_service_mesh_config_set_circuit_breaker_failure_rate(mesh, -1.0), DMSC_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(dmsc_service_mesh_config_set_load_balancing_algorithm(mesh, 99), DMSC_ERR_INVALID_ARGUMENT);
    EXPECT(dmsc_service_mesh_reload_config(mesh) == DMSC_OK);

    /* Lifecycle misuse. */
    EXPECT(dmsc_service_mesh_start(mesh) == DMSC_OK);
    EXPECT_ERR(dmsc_service_mesh_start(mesh), DMSC_ERR_STATE);
    EXPECT(dmsc_service_mesh_stop(mesh) == DMSC_OK);
    EXPECT(dmsc_service_mesh_stop(mesh) == DMSC_OK);

    dmsc_service_endpoint_free(endpoint);
    dmsc_service_mesh_free(mesh);
    dmsc_service_mesh_config_free(config);
    if (failures == 0) {
        printf("all bad-input checks passed\n");
    }
    return failures == 0 ? 0 : 1;
}
