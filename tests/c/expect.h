/* EXPECT for the C test programs: reports a failed condition with the library's last error
 * message and counts it in `failures`; the program exits non-zero when any failed. */
#ifndef DMSC_TEST_EXPECT_H
#define DMSC_TEST_EXPECT_H

#include <stdio.h>

#include "dmsc.h"

static int failures = 0;

#define EXPECT(cond)                                                                     \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: expected %s (%s)\n", __FILE__, __LINE__, #cond,     \
                    dmsc_last_error_message());                                          \
            failures++;                                                                  \
        }                                                                                \
    } while (0)

#endif /* DMSC_TEST_EXPECT_H */
