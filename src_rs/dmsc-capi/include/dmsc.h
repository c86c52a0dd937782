/* dmsc.h: the C API of the dmsc service mesh. */
#ifndef DMSC_H
#define DMSC_H

#ifdef __cplusplus
extern "C" {
#endif

/* The library version, e.g. "0.1.0". The string is static: do not free it. */
const char *dmsc_version(void);

#ifdef __cplusplus
}
#endif

#endif /* DMSC_H */
