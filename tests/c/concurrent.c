/* Eight threads register, discover, record and deregister on one mesh at once.
 * Run under valgrind (helgrind/drd) and under -fsanitize=address,undefined. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "dmsc.h"

#define THREADS 8

static DMSCServiceMesh *mesh;
static int health_port;
static int rounds;

static void *worker(void *arg) {
    int id = (int)(size_t)arg;
    char name[32];
    snprintf(name, sizeof name, "svc-%d", id % 2);
    for (int round = 0; round < rounds; round++) {
        DMSCServiceEndpoint *endpoint = dmsc_service_endpoint_new();
        dmsc_service_endpoint_set_name(endpoint, name);
        dmsc_service_endpoint_set_host(endpoint, "127.0.0.1");
        /* The health server listens on health_port; other ports fail their TCP check. */
        dmsc_service_endpoint_set_port(endpoint, (uint16_t)health_port);
        dmsc_service_endpoint_set_health_check_url(endpoint, "/health");
        if (dmsc_service_mesh_register(mesh, endpoint) != DMSC_OK) {
            fprintf(stderr, "register: %s\n", dmsc_last_error_message());
            exit(1);
        }
        DMSCServiceEndpoint *found = NULL;
        if (dmsc_service_mesh_discover_with_key(mesh, name, (const uint8_t *)&round, sizeof round, &found) == DMSC_OK) {
            dmsc_service_mesh_record_request(mesh, found, round % 3 != 0, 100);
            dmsc_service_endpoint_free(found);
        }
        (void)dmsc_service_mesh_get_healthy_count(mesh, name);
        if (round % 50 == 0) {
            dmsc_service_mesh_set_load_balancing_algorithm(mesh, round % 6);
            dmsc_service_mesh_reload_config(mesh);
        }
        if (round % 4 == 3) {
            dmsc_service_mesh_deregister(mesh, endpoint);
        }
        dmsc_service_endpoint_free(endpoint);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s HEALTH_PORT ROUNDS\n", argv[0]);
        return 2;
    }
    health_port = atoi(argv[1]);
    rounds = atoi(argv[2]);
    DMSCServiceMeshConfig *config = dmsc_service_mesh_config_new();
    dmsc_service_mesh_config_set_health_check_interval_ms(config, 5);
    mesh = dmsc_service_mesh_new(config);
    dmsc_service_mesh_config_free(config);
    if (mesh == NULL || dmsc_service_mesh_start(mesh) != DMSC_OK) {
        fprintf(stderr, "mesh: %s\n", dmsc_last_error_message());
        return 1;
    }
    pthread_t threads[THREADS];
    for (int i = 0; i < THREADS; i++) {
        pthread_create(&threads[i], NULL, worker, (void *)(size_t)i);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(threads[i], NULL);
    }
    printf("total=%lu failed=%lu\n", (unsigned long)dmsc_service_mesh_get_total_requests(mesh),
           (unsigned long)dmsc_service_mesh_get_failed_requests(mesh));
    dmsc_service_mesh_stop(mesh);
    dmsc_service_mesh_free(mesh);
    return 0;
}
