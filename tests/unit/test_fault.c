/* test_fault.c — SP_FAULT parsing and matching (common/sp_fault.h), the fault injection that
 * tests/mpi/test_failure.sh drives. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "common/sp_fault.h"

static void test_fault_parse_and_hit(void **state) {
    (void)state;
    sp_fault f;
    sp_err e = {SP_OK, ""};
    assert_int_equal(sp_fault_parse(NULL, &f, &e), SP_OK);
    assert_int_equal(f.n, 0);
    assert_int_equal(sp_fault_parse("", &f, &e), SP_OK);
    assert_int_equal(f.n, 0);
    assert_int_equal(sp_fault_hit(&f, SP_FAULT_KILL, 0, 0), 0);
    assert_int_equal(sp_fault_hit(NULL, SP_FAULT_KILL, 0, 0), 0);

    assert_int_equal(sp_fault_parse("kill:2:1,alloc:*:3,alloc:0:*", &f, &e), SP_OK);
    assert_int_equal(f.n, 3);
    assert_int_equal(sp_fault_hit(&f, SP_FAULT_KILL, 2, 1), 1);
    assert_int_equal(sp_fault_hit(&f, SP_FAULT_KILL, 2, 0), 0);
    assert_int_equal(sp_fault_hit(&f, SP_FAULT_KILL, 1, 1), 0);
    assert_int_equal(sp_fault_hit(&f, SP_FAULT_ALLOC, 2, 1), 0);
    assert_int_equal(sp_fault_hit(&f, SP_FAULT_ALLOC, 7, 3), 1);  /* any rank, layer 3 */
    assert_int_equal(sp_fault_hit(&f, SP_FAULT_ALLOC, 0, 42), 1); /* rank 0, any layer */
    assert_int_equal(sp_fault_hit(&f, SP_FAULT_ALLOC, 1, 42), 0);
}

static void test_fault_parse_errors(void **state) {
    (void)state;
    static const char *const bad[] = {"kill", "kill:1", "kill:1:", "kill::1", "boom:1:1",
                                      "kill:x:1", "kill:1:-2", "kill:1:1,", "kill:1:1,,alloc:1:1",
                                      "kill:1:1:1", "KILL:1:1", "kill:1234567890:1",
                                      "kill:1:1,kill:1:1,kill:1:1,kill:1:1,kill:1:1,kill:1:1,"
                                      "kill:1:1,kill:1:1,kill:1:1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sp_fault f;
        sp_err e = {SP_OK, ""};
        assert_int_equal(sp_fault_parse(bad[i], &f, &e), SP_EINVAL);
        assert_non_null(strstr(e.msg, "SP_FAULT="));
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fault_parse_and_hit),
        cmocka_unit_test(test_fault_parse_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
