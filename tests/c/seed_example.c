/*
 * The usage example of the dmsc C API specification, verbatim but for the endpoint's
 * address, which the test points at a loopback server answering /health
 * (-DDMSC_EXAMPLE_HOST='"127.0.0.1"' -DDMSC_EXAMPLE_PORT=<port>).
 */
#include <stdio.h>

#include "dmsc.h"

#define ERROR_INIT 1
#define ERROR_START 2

int main(void) {
    // Create service mesh configuration
    DMSCServiceMeshConfig* config = dmsc_service_mesh_config_new();
    if (config == NULL) {
    fprintf(stderr, "Failed to create service mesh config\n");
    return ERROR_INIT;
    }
    // Configure mesh settings
    dmsc_service_mesh_config_set_enable_mtls(config, true);
    dmsc_service_mesh_config_set_enable_circuit_breaker(config, true);
    dmsc_service_mesh_config_set_enable_tracing(config, true);
    dmsc_service_mesh_config_set_enable_metrics(config, true);
    // Configure circuit breaker
    dmsc_service_mesh_config_set_circuit_breaker_failure_rate(config, 0.5);
    dmsc_service_mesh_config_set_circuit_breaker_timeout_ms(config, 30000);
    // Configure load balancing
    dmsc_service_mesh_config_set_load_balancing_algorithm(config, LB_LEAST_REQUESTS);
    // Create service mesh controller
    DMSCServiceMesh* mesh = dmsc_service_mesh_new(config);
    if (mesh == NULL) {
    fprintf(stderr, "Failed to create service mesh\n");
    dmsc_service_mesh_config_free(config);
    return ERROR_INIT;
    }
    // Start the mesh controller
    int result = dmsc_service_mesh_start(mesh);
    if (result != 0) {
    fprintf(stderr, "Failed to start service mesh: %d\n", result);
    dmsc_service_mesh_free(mesh);
    dmsc_service_mesh_config_free(config);
    return ERROR_START;
    }
    printf("Service mesh started successfully\n");
    // Register a service endpoint
    DMSCServiceEndpoint* endpoint = dmsc_service_endpoint_new();
    if (endpoint == NULL) {
    fprintf(stderr, "Failed to create service endpoint\n");
    dmsc_service_mesh_stop(mesh);
    dmsc_service_mesh_free(mesh);
    dmsc_service_mesh_config_free(config);
    return ERROR_INIT;
    }
    dmsc_service_endpoint_set_name(endpoint, "user-service");
    dmsc_service_endpoint_set_host(endpoint, DMSC_EXAMPLE_HOST);
    dmsc_service_endpoint_set_port(endpoint, DMSC_EXAMPLE_PORT);
    dmsc_service_endpoint_set_version(endpoint, "v1.2.3");
    dmsc_service_endpoint_set_health_check_url(endpoint, "/health");
    result = dmsc_service_mesh_register(mesh, endpoint);
    if (result != 0) {
    fprintf(stderr, "Failed to register endpoint: %d\n", result);
    dmsc_service_endpoint_free(endpoint);
    } else {
    printf("Service endpoint registered successfully\n");
    }
    // Get service information
    const char* service_name = dmsc_service_endpoint_get_name(endpoint);
    const char* service_version = dmsc_service_endpoint_get_version(endpoint);
    uint32_t healthy_count = dmsc_service_mesh_get_healthy_count(mesh, service_name);
    printf("Service: %s (version: %s), healthy instances: %u\n",
    service_name, service_version, healthy_count);
    // Discover a service
    DMSCServiceEndpoint* discovered = NULL;
    result = dmsc_service_mesh_discover(mesh, "user-service", &discovered);
    if (result == 0 && discovered != NULL) {
    const char* host = dmsc_service_endpoint_get_host(discovered);
    uint16_t port = dmsc_service_endpoint_get_port(discovered);
    printf("Discovered service at %s:%d\n", host, port);
    dmsc_service_endpoint_free(discovered);
    }
    // Update service mesh configuration at runtime
    dmsc_service_mesh_config_set_circuit_breaker_failure_rate(mesh, 0.3);
    dmsc_service_mesh_reload_config(mesh);
    // Get service mesh statistics
    uint64_t total_requests = dmsc_service_mesh_get_total_requests(mesh);
    uint64_t failed_requests = dmsc_service_mesh_get_failed_requests(mesh);
    printf("Mesh stats: %lu total requests, %lu failed\n",
    total_requests, failed_requests);
    // Deregister service when shutting down
    dmsc_service_mesh_deregister(mesh, endpoint);
    // Graceful shutdown
    dmsc_service_mesh_stop(mesh);
    dmsc_service_endpoint_free(endpoint);
    dmsc_service_mesh_free(mesh);
    dmsc_service_mesh_config_free(config);
    printf("Service mesh shutdown complete\n");
    return 0;
}
