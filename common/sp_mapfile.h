/* sp_mapfile.h — a whole regular file mapped read-only: the first step of every weight reader
 * (safetensors, llama2.c). The pages are the page cache's, so a model bigger than memory is
 * read lazily, block by block, as the tensors are touched. */
#ifndef SP_MAPFILE_H
#define SP_MAPFILE_H

#include <stddef.h>

#include "common/sp_error.h"

/* Map path. A file shorter than min_size is refused with
 * "<path>: file is N bytes, shorter than <min_what>" (SP_ETRUNC).
 * @return SP_OK (*map, *len set; release with sp_mapfile_close); SP_ENOTFOUND (missing);
 *         SP_EIO (cannot open, not a regular file, mmap failed); SP_ETRUNC. */
sp_status sp_mapfile_open(const char *path, size_t min_size, const char *min_what, void **map,
                          size_t *len, sp_err *err);

/* Unmap what sp_mapfile_open mapped (NULL is ignored). */
void sp_mapfile_close(void *map, size_t len);

#endif
