/* sp_mapfile.c — see sp_mapfile.h. */
#include "common/sp_mapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

sp_status sp_mapfile_open(const char *path, size_t min_size, const char *min_what, void **map,
                          size_t *len, sp_err *err) {
    *map = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    SP_RETURN_IF(fd < 0, err, errno == ENOENT ? SP_ENOTFOUND : SP_EIO, "%s: cannot open: %s",
                 path, strerror(errno));
    struct stat sb;
    sp_status st = SP_OK;
    size_t size = 0;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = sp_err_set(err, SP_EIO, "%s: not a regular file", path);
    } else {
        size = (size_t)sb.st_size;
        if (size < min_size || size == 0)
            st = sp_err_set(err, SP_ETRUNC, "%s: file is %zu bytes, shorter than %s", path, size,
                            min_what);
    }
    void *m = MAP_FAILED;
    if (st == SP_OK) {
        m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) st = sp_err_set(err, SP_EIO, "%s: mmap failed: %s", path, strerror(errno));
    }
    close(fd); /* the mapping keeps the file open */
    if (st != SP_OK) return st;
    *map = m;
    *len = size;
    return SP_OK;
}

void sp_mapfile_close(void *map, size_t len) {
    if (map) munmap(map, len);
}
