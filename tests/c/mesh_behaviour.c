/* Behaviour behind the C API: versions, DNS names, balancing, breakers, tracing, counters.
 * Usage: mesh_behaviour PORT_A PORT_B PORT_C   (three loopback servers answering /health) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmsc.h"
#include "expect.h"


static void add(DMSCServiceMesh *mesh, int port, const char *version, uint32_t weight) {
    DMSCServiceEndpoint *e = dmsc_service_endpoint_new();
    dmsc_service_endpoint_set_name(e, "user-service");
    dmsc_service_endpoint_set_host(e, "127.0.0.1");
    dmsc_service_endpoint_set_port(e, (uint16_t)port);
    dmsc_service_endpoint_set_version(e, version);
    dmsc_service_endpoint_set_health_check_url(e, "/health");
    dmsc_service_endpoint_set_weight(e, weight);
    dmsc_service_endpoint_set_zone(e, "zone-a");
    EXPECT(dmsc_service_mesh_register(mesh, e) == DMSC_OK);
    dmsc_service_endpoint_free(e);
}

/* Port of one discovered instance (0 if none), with the endpoint freed. */
static int pick(DMSCServiceMesh *mesh, const char *key) {
    DMSCServiceEndpoint *found = NULL;
    int rc = key ? dmsc_service_mesh_discover_with_key(mesh, "user-service", (const uint8_t *)key, strlen(key), &found)
                 : dmsc_service_mesh_discover(mesh, "user-service", &found);
    int port = rc == DMSC_OK ? dmsc_service_endpoint_get_port(found) : 0;
    dmsc_service_endpoint_free(found);
    return port;
}

int main(int argc, char **argv) {
    if (argc != 4) return 2;
    int a = atoi(argv[1]), b = atoi(argv[2]), c = atoi(argv[3]);
    DMSCServiceMeshConfig *config = dmsc_service_mesh_config_new();
    EXPECT(dmsc_service_mesh_config_set_circuit_breaker_window(config, 4, 4) == DMSC_OK);
    EXPECT(dmsc_service_mesh_config_set_domain(config, "mesh.local") == DMSC_OK);
    DMSCServiceMesh *mesh = dmsc_service_mesh_new(config);
    dmsc_service_mesh_config_free(config);
    add(mesh, a, "v1", 1);
    add(mesh, b, "v1", 3);
    add(mesh, c, "v2", 1);
    EXPECT(dmsc_service_mesh_get_healthy_count(mesh, "user-service") == 3);

    /* Discovered endpoints carry every registered field. */
    DMSCServiceEndpoint *found = NULL;
    EXPECT(dmsc_service_mesh_discover_version(mesh, "user-service", "v2", &found) == DMSC_OK);
    EXPECT(dmsc_service_endpoint_get_port(found) == c);
    EXPECT(strcmp(dmsc_service_endpoint_get_version(found), "v2") == 0);
    EXPECT(strcmp(dmsc_service_endpoint_get_zone(found), "zone-a") == 0);
    EXPECT(strcmp(dmsc_service_endpoint_get_health_check_url(found), "/health") == 0);
    dmsc_service_endpoint_free(found);
    EXPECT(dmsc_service_mesh_discover_version(mesh, "user-service", "v9", &found) == DMSC_ERR_NOT_FOUND);

    /* DNS-style names. */
    EXPECT(dmsc_service_mesh_resolve(mesh, "v2.user-service.service.mesh.local.", &found) == DMSC_OK);
    EXPECT(found != NULL && dmsc_service_endpoint_get_port(found) == c);
    dmsc_service_endpoint_free(found);
    EXPECT(dmsc_service_mesh_resolve(mesh, "user-service.service.mesh.local", &found) == DMSC_OK);
    dmsc_service_endpoint_free(found);
    EXPECT(dmsc_service_mesh_resolve(mesh, "user-service.service.elsewhere", &found) == DMSC_ERR_NOT_FOUND);

    /* Round robin visits every instance. */
    int seen_a = 0, seen_b = 0, seen_c = 0;
    for (int i = 0; i < 30; i++) {
        int port = pick(mesh, NULL);
        seen_a += port == a;
        seen_b += port == b;
        seen_c += port == c;
    }
    EXPECT(seen_a == 10 && seen_b == 10 && seen_c == 10);

    /* Weighted follows weights 1:3:1, changed on the running mesh. */
    EXPECT(dmsc_service_mesh_config_set_load_balancing_algorithm(mesh, LB_WEIGHTED) == DMSC_OK);
    EXPECT(pick(mesh, NULL) != 0);
    EXPECT(dmsc_service_mesh_reload_config(mesh) == DMSC_OK);
    seen_a = seen_b = seen_c = 0;
    for (int i = 0; i < 50; i++) {
        int port = pick(mesh, NULL);
        seen_a += port == a;
        seen_b += port == b;
        seen_c += port == c;
    }
    EXPECT(seen_a == 10 && seen_b == 30 && seen_c == 10);

    /* Consistent hashing and Maglev: the same key, the same instance. */
    for (int lb = LB_CONSISTENT_HASH; lb <= LB_MAGLEV; lb += LB_MAGLEV - LB_CONSISTENT_HASH) {
        dmsc_service_mesh_set_load_balancing_algorithm(mesh, lb);
        dmsc_service_mesh_reload_config(mesh);
        int first = pick(mesh, "session-42");
        for (int i = 0; i < 20; i++) EXPECT(pick(mesh, "session-42") == first);
    }

    /* Least requests avoids an instance with requests in flight. */
    dmsc_service_mesh_set_load_balancing_algorithm(mesh, LB_LEAST_REQUESTS);
    dmsc_service_mesh_reload_config(mesh);
    DMSCServiceEndpoint *held[8];
    int held_port = 0, held_count = 0;
    while (held_count < 8) {
        DMSCServiceEndpoint *e = NULL;
        dmsc_service_mesh_discover_version(mesh, "user-service", "v2", &e);
        held[held_count++] = e;
        held_port = dmsc_service_endpoint_get_port(e);
    }
    int to_busy = 0;
    for (int i = 0; i < 300; i++) to_busy += pick(mesh, NULL) == held_port;
    EXPECT(to_busy < 60); /* about 1/9 of picks: only when both choices are the busy one */
    for (int i = 0; i < held_count; i++) {
        EXPECT(dmsc_service_mesh_record_request(mesh, held[i], true, 1000) == DMSC_OK);
        /* Recording twice ends nothing twice: the second call goes by address. */
        dmsc_service_endpoint_free(held[i]);
    }

    /* The breaker opens after 4 failures of one instance and discovery skips it. */
    dmsc_service_mesh_set_load_balancing_algorithm(mesh, LB_ROUND_ROBIN);
    dmsc_service_mesh_reload_config(mesh);
    DMSCServiceEndpoint *victim = NULL;
    EXPECT(dmsc_service_mesh_discover_version(mesh, "user-service", "v2", &victim) == DMSC_OK);
    for (int i = 0; i < 4; i++) EXPECT(dmsc_service_mesh_record_request(mesh, victim, false, 5000) == DMSC_OK);
    dmsc_service_endpoint_free(victim);
    EXPECT(dmsc_service_mesh_get_healthy_count(mesh, "user-service") == 3);
    for (int i = 0; i < 30; i++) EXPECT(pick(mesh, NULL) != c);
    EXPECT(dmsc_service_mesh_discover_version(mesh, "user-service", "v2", &found) == DMSC_ERR_NOT_FOUND);

    /* Counters: 8 successes and 4 failures were recorded. */
    EXPECT(dmsc_service_mesh_get_total_requests(mesh) == 12);
    EXPECT(dmsc_service_mesh_get_failed_requests(mesh) == 4);

    /* W3C trace context. */
    char traceparent[DMSC_TRACEPARENT_SIZE];
    const char *parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    EXPECT(dmsc_service_mesh_trace_context(mesh, parent, traceparent, sizeof traceparent) == DMSC_OK);
    EXPECT(strncmp(traceparent, parent, 36) == 0 && strlen(traceparent) == 55);
    EXPECT(strcmp(traceparent + 36, parent + 36) != 0);
    EXPECT(dmsc_service_mesh_trace_context(mesh, NULL, traceparent, sizeof traceparent) == DMSC_OK);
    EXPECT(strlen(traceparent) == 55 && traceparent[0] == '0' && traceparent[54] == '1');
    EXPECT(dmsc_service_mesh_trace_context(mesh, "00-zz", traceparent, sizeof traceparent) == DMSC_ERR_INVALID_ARGUMENT);
    EXPECT(dmsc_service_mesh_trace_context(mesh, NULL, traceparent, 10) == DMSC_ERR_INVALID_ARGUMENT);
    EXPECT(dmsc_service_mesh_trace_context(mesh, NULL, NULL, 100) == DMSC_ERR_NULL_POINTER);

    /* Deregistration. */
    DMSCServiceEndpoint *gone = dmsc_service_endpoint_new();
    dmsc_service_endpoint_set_name(gone, "user-service");
    dmsc_service_endpoint_set_host(gone, "127.0.0.1");
    dmsc_service_endpoint_set_port(gone, (uint16_t)a);
    EXPECT(dmsc_service_mesh_deregister(mesh, gone) == DMSC_OK);
    EXPECT(dmsc_service_mesh_get_healthy_count(mesh, "user-service") == 2);
    dmsc_service_endpoint_free(gone);

    dmsc_service_mesh_free(mesh);
    if (failures == 0) printf("mesh behaviour ok\n");
    return failures == 0 ? 0 : 1;
}
