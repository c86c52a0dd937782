/* A native program joining a dmsc controller, driven line by line from its standard input.
 * Usage: controller_join CONTROLLER_URL HEALTH_PORT CLOSED_PORT
 *   HEALTH_PORT: a loopback HTTP server answering GET /health with 200;
 *   CLOSED_PORT: a loopback port nothing listens on (an unreachable controller).
 * Protocol: prints "registered", then for each "go" line read it moves to the next step:
 * discover "py-svc" (registered by the test through the controller), see it disappear once
 * the test deregisters it, then deregister its own instance. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dmsc.h"
#include "expect.h"


static void sleep_ms(long ms) {
    struct timespec delay = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&delay, NULL);
}

/* Waits for the next "go" line from the test; false at end of input. */
static int wait_go(void) {
    char line[64];
    while (fgets(line, sizeof line, stdin) != NULL) {
        if (strncmp(line, "go", 2) == 0) return 1;
    }
    return 0;
}

/* Polls until the healthy count of service is `want` (10 s at most, so that the background
 * watch has time to bring in another program's change). */
static int await_count(DMSCServiceMesh *mesh, const char *service, uint32_t want) {
    for (int i = 0; i < 1000; i++) {
        if (dmsc_service_mesh_get_healthy_count(mesh, service) == want) return 1;
        sleep_ms(10);
    }
    return 0;
}

static DMSCServiceEndpoint *native_endpoint(int port) {
    DMSCServiceEndpoint *e = dmsc_service_endpoint_new();
    EXPECT(dmsc_service_endpoint_set_name(e, "native-svc") == DMSC_OK);
    EXPECT(dmsc_service_endpoint_set_host(e, "127.0.0.1") == DMSC_OK);
    EXPECT(dmsc_service_endpoint_set_port(e, (uint16_t)port) == DMSC_OK);
    EXPECT(dmsc_service_endpoint_set_version(e, "v1") == DMSC_OK);
    EXPECT(dmsc_service_endpoint_set_health_check_url(e, "/health") == DMSC_OK);
    EXPECT(dmsc_service_endpoint_set_zone(e, "zone-a") == DMSC_OK);
    EXPECT(dmsc_service_endpoint_set_label(e, "lang", "c") == DMSC_OK);
    return e;
}

static void unreachable_controller(int closed_port) {
    char address[64];
    snprintf(address, sizeof address, "127.0.0.1:%d", closed_port);
    DMSCServiceMeshConfig *config = dmsc_service_mesh_config_new();
    EXPECT(dmsc_service_mesh_config_set_controller(config, address) == DMSC_OK);
    DMSCServiceMesh *mesh = dmsc_service_mesh_new(config);
    dmsc_service_mesh_config_free(config);
    EXPECT(mesh != NULL);
    EXPECT(dmsc_service_mesh_start(mesh) == DMSC_ERR_IO);
    printf("unreachable start: %s\n", dmsc_last_error_message());
    DMSCServiceEndpoint *e = native_endpoint(closed_port);
    EXPECT(dmsc_service_mesh_register(mesh, e) == DMSC_ERR_IO);
    printf("unreachable register: %s\n", dmsc_last_error_message());
    EXPECT(dmsc_service_mesh_deregister(mesh, e) == DMSC_ERR_IO);
    EXPECT(dmsc_service_mesh_get_healthy_count(mesh, "native-svc") == 0);
    dmsc_service_endpoint_free(e);
    dmsc_service_mesh_free(mesh);
}

int main(int argc, char **argv) {
    if (argc != 4) return 2;
    const char *controller = argv[1];
    int health_port = atoi(argv[2]), closed_port = atoi(argv[3]);
    setvbuf(stdout, NULL, _IOLBF, 0);

    DMSCServiceMeshConfig *config = dmsc_service_mesh_config_new();
    /* Bad addresses are refused and change nothing; NULL and "" mean standalone. */
    EXPECT(dmsc_service_mesh_config_set_controller(config, "https://127.0.0.1:1") == DMSC_ERR_INVALID_ARGUMENT);
    EXPECT(strncmp(dmsc_last_error_message(), "controller", 10) == 0);
    EXPECT(dmsc_service_mesh_config_set_controller(config, "127.0.0.1") == DMSC_ERR_INVALID_ARGUMENT);
    EXPECT(dmsc_service_mesh_config_set_controller(NULL, controller) == DMSC_ERR_NULL_POINTER);
    EXPECT(dmsc_service_mesh_config_set_controller(config, NULL) == DMSC_OK);
    EXPECT(dmsc_service_mesh_config_set_controller(config, "") == DMSC_OK);
    EXPECT(dmsc_service_mesh_config_set_controller(config, controller) == DMSC_OK);
    DMSCServiceMesh *mesh = dmsc_service_mesh_new(config);
    dmsc_service_mesh_config_free(config);
    if (mesh == NULL) {
        fprintf(stderr, "mesh: %s\n", dmsc_last_error_message());
        return 1;
    }
    EXPECT(dmsc_service_mesh_start(mesh) == DMSC_OK);
    EXPECT(dmsc_service_mesh_start(mesh) == DMSC_ERR_STATE);

    /* Registration goes to the controller (which checks health) and is visible at once. */
    DMSCServiceEndpoint *mine = native_endpoint(health_port);
    EXPECT(dmsc_service_mesh_register(mesh, mine) == DMSC_OK);
    EXPECT(dmsc_service_mesh_get_healthy_count(mesh, "native-svc") == 1);
    DMSCServiceEndpoint *bad = dmsc_service_endpoint_new();
    dmsc_service_endpoint_set_host(bad, "127.0.0.1");
    dmsc_service_endpoint_set_port(bad, 1);
    EXPECT(dmsc_service_mesh_register(mesh, bad) == DMSC_ERR_INVALID_ARGUMENT);
    EXPECT(strncmp(dmsc_last_error_message(), "name", 4) == 0);
    dmsc_service_endpoint_free(bad);
    DMSCServiceEndpoint *found = NULL;
    EXPECT(dmsc_service_mesh_resolve(mesh, "v1.native-svc.service.dmsc", &found) == DMSC_OK);
    EXPECT(found != NULL && dmsc_service_endpoint_get_port(found) == health_port);
    EXPECT(found != NULL && strcmp(dmsc_service_endpoint_get_label(found, "lang"), "c") == 0);
    EXPECT(dmsc_service_mesh_record_request(mesh, found, true, 1500) == DMSC_OK);
    dmsc_service_endpoint_free(found);
    printf("registered\n");

    /* The reverse: an instance another program registered through the controller. */
    if (!wait_go()) return 3;
    EXPECT(await_count(mesh, "py-svc", 1));
    found = NULL;
    EXPECT(dmsc_service_mesh_discover(mesh, "py-svc", &found) == DMSC_OK);
    if (found != NULL) {
        printf("discovered py-svc at %s:%u version %s\n", dmsc_service_endpoint_get_host(found),
               (unsigned)dmsc_service_endpoint_get_port(found), dmsc_service_endpoint_get_version(found));
        EXPECT(dmsc_service_mesh_record_request(mesh, found, true, 800) == DMSC_OK);
        dmsc_service_endpoint_free(found);
    }

    if (!wait_go()) return 3;
    EXPECT(await_count(mesh, "py-svc", 0));
    found = NULL;
    EXPECT(dmsc_service_mesh_discover(mesh, "py-svc", &found) == DMSC_ERR_NOT_FOUND);
    EXPECT(found == NULL);
    printf("py-svc gone\n");

    /* Deregistration goes to the controller too. */
    if (!wait_go()) return 3;
    EXPECT(dmsc_service_mesh_deregister(mesh, mine) == DMSC_OK);
    EXPECT(dmsc_service_mesh_get_healthy_count(mesh, "native-svc") == 0);
    EXPECT(dmsc_service_mesh_deregister(mesh, mine) == DMSC_ERR_NOT_FOUND);
    dmsc_service_endpoint_free(mine);
    printf("deregistered\n");
    EXPECT(dmsc_service_mesh_get_total_requests(mesh) == 2);
    EXPECT(dmsc_service_mesh_stop(mesh) == DMSC_OK);
    dmsc_service_mesh_free(mesh);

    unreachable_controller(closed_port);
    if (failures) return 1;
    printf("controller join ok\n");
    return 0;
}
