/* fuzz_bits_map.c — sp_bits_map_read on a --bits-map file ("module bits" per line), the
 * format search writes and eval/generate/export read. */
#include "tests/fuzz/fuzz_util.h"

#include "pipeline/sp_cli.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file("bits.map", data, size);
    sp_bits_map map;
    sp_err err = {SP_OK, ""};
    if (sp_bits_map_read(path, &map, &err) == SP_OK)
        for (int i = 0; i < map.n; i++)
            if (!map.names[i] || map.bits[i] < 1 || map.bits[i] > 8) abort(); /* 1: Q1_0 */
    sp_bits_map_free(&map);
    return 0;
}
