/* test_data.h — where the unit tests find the shared test data (header-only, tests only).
 *
 * $SP_DATA_DIR when the test runs, else the directory configured at build time
 * (SP_TEST_DATA_DIR, tests/CMakeLists.txt; default <clone>/../shared/data). A file that is not
 * there ends the test program with one line naming the file and the directory it looked in,
 * instead of failing later in a reader with a message about something else.
 */
#ifndef SP_TEST_DATA_H
#define SP_TEST_DATA_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* The path of rel under the data directory. The result lives until the 8th later call. */
static inline const char *tu_data(const char *rel) {
    static char bufs[8][4096];
    static int k;
    const char *dir = getenv("SP_DATA_DIR");
    if (!dir || !*dir) dir = SP_TEST_DATA_DIR;
    char *b = bufs[k++ % 8];
    snprintf(b, sizeof bufs[0], "%s/%s", dir, rel);
    if (access(b, R_OK) != 0) {
        fprintf(stderr, "test data not found: %s (looked in SP_DATA_DIR=%s; README.md, \"Test "
                        "data\")\n", b, dir);
        exit(1);
    }
    return b;
}

#endif
