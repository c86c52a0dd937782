/* Latency of dmsc_service_mesh_discover (+ free of the returned endpoint) on a service with
 * 1000 healthy instances, for each load-balancing algorithm, in process.
 *
 * Usage: discover_bench [CALLS]   (prints one line per algorithm: p50, p99, mean in ns)
 * The instances are 1000 ports of 127.0.0.1 passing a TCP health check against listeners this
 * program opens itself, so nothing leaves the machine. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "dmsc.h"

#define INSTANCES 1000

static const char *NAMES[] = {"round_robin", "least_requests", "weighted",
                              "consistent_hash", "random", "maglev"};

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static int listen_any(uint16_t *port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 1024) != 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &len) != 0) {
        perror("listen");
        exit(1);
    }
    *port = ntohs(addr.sin_port);
    return fd;
}

int main(int argc, char **argv) {
    long calls = argc > 1 ? atol(argv[1]) : 200000;
    /* One listener per instance: raise the descriptor limit to the hard maximum. */
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }
    uint64_t *samples = malloc(sizeof(uint64_t) * (size_t)calls);
    int listeners[INSTANCES];
    DMSCServiceMeshConfig *config = dmsc_service_mesh_config_new();
    DMSCServiceMesh *mesh = dmsc_service_mesh_new(config);
    for (int i = 0; i < INSTANCES; i++) {
        uint16_t port;
        listeners[i] = listen_any(&port);
        DMSCServiceEndpoint *endpoint = dmsc_service_endpoint_new();
        dmsc_service_endpoint_set_name(endpoint, "bench");
        dmsc_service_endpoint_set_host(endpoint, "127.0.0.1");
        dmsc_service_endpoint_set_port(endpoint, port);
        dmsc_service_endpoint_set_weight(endpoint, 1 + (uint32_t)(i % 3));
        if (dmsc_service_mesh_register(mesh, endpoint) != DMSC_OK) {
            fprintf(stderr, "register: %s\n", dmsc_last_error_message());
            return 1;
        }
        dmsc_service_endpoint_free(endpoint);
    }
    if (dmsc_service_mesh_get_healthy_count(mesh, "bench") != INSTANCES) {
        fprintf(stderr, "expected %d healthy instances\n", INSTANCES);
        return 1;
    }
    printf("%-16s %10s %10s %10s\n", "algorithm", "p50_ns", "p99_ns", "mean_ns");
    for (int lb = LB_ROUND_ROBIN; lb <= LB_MAGLEV; lb++) {
        dmsc_service_mesh_set_load_balancing_algorithm(mesh, lb);
        dmsc_service_mesh_reload_config(mesh);
        uint64_t total = 0;
        for (long i = 0; i < calls; i++) {
            uint64_t key = (uint64_t)i * 0x9E3779B97F4A7C15u;
            DMSCServiceEndpoint *found = NULL;
            uint64_t start = now_ns();
            int rc = dmsc_service_mesh_discover_with_key(mesh, "bench", (const uint8_t *)&key, sizeof key, &found);
            dmsc_service_endpoint_free(found);
            uint64_t elapsed = now_ns() - start;
            if (rc != DMSC_OK) {
                fprintf(stderr, "discover: %s\n", dmsc_last_error_message());
                return 1;
            }
            samples[i] = elapsed;
            total += elapsed;
        }
        qsort(samples, (size_t)calls, sizeof(uint64_t), cmp_u64);
        printf("%-16s %10lu %10lu %10lu\n", NAMES[lb], (unsigned long)samples[calls / 2],
               (unsigned long)samples[calls * 99 / 100], (unsigned long)(total / (uint64_t)calls));
    }
    dmsc_service_mesh_free(mesh);
    dmsc_service_mesh_config_free(config);
    for (int i = 0; i < INSTANCES; i++) close(listeners[i]);
    free(samples);
    return 0;
}
