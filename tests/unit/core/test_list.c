/* Unit tests for common/core/list.h: the one intrusive list. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/list.h"

struct item {
    int value;
    struct list_node node;
};

/* The values of `head` from front to back, as a number: 1,2,3 -> 123. */
static int values_in_order(struct list_node *head)
{
    int digits = 0;
    struct list_node *it, *tmp;
    list_for_each_safe(it, tmp, head) digits =
        digits * 10 + list_entry(it, struct item, node)->value;
    return digits;
}

static void test_a_new_list_is_empty_and_a_zeroed_node_is_on_no_list(void **state)
{
    struct list_node head;
    list_init(&head);
    struct item a = {.value = 1};
    assert_true(list_is_empty(&head));
    assert_false(list_is_linked(&a.node));
    assert_null(list_front(&head));
    assert_null(list_pop_front(&head));
    assert_int_equal(values_in_order(&head), 0);
}

static void test_push_back_keeps_fifo_order_and_pop_front_takes_the_oldest(void **state)
{
    struct list_node head;
    list_init(&head);
    struct item a = {.value = 1}, b = {.value = 2}, c = {.value = 3};
    list_push_back(&head, &a.node);
    list_push_back(&head, &b.node);
    list_push_back(&head, &c.node);
    assert_true(list_is_linked(&b.node));
    assert_int_equal(values_in_order(&head), 123);
    assert_ptr_equal(list_entry(list_pop_front(&head), struct item, node), &a);
    assert_false(list_is_linked(&a.node));
    assert_int_equal(values_in_order(&head), 23);
}

static void test_unlinking_from_the_middle_leaves_the_rest_in_order_and_the_node_free(void **state)
{
    struct list_node head;
    list_init(&head);
    struct item a = {.value = 1}, b = {.value = 2}, c = {.value = 3};
    list_push_back(&head, &a.node);
    list_push_back(&head, &b.node);
    list_push_back(&head, &c.node);
    list_unlink(&b.node);
    assert_false(list_is_linked(&b.node));
    assert_int_equal(values_in_order(&head), 13);
    /* A node taken off may go on a list again. */
    list_push_back(&head, &b.node);
    assert_int_equal(values_in_order(&head), 132);
    list_unlink(&a.node);
    list_unlink(&c.node);
    list_unlink(&b.node);
    assert_true(list_is_empty(&head));
}

static void test_a_walk_may_unlink_the_node_it_stands_on(void **state)
{
    struct list_node head;
    list_init(&head);
    struct item items[4] = {{.value = 1}, {.value = 2}, {.value = 3}, {.value = 4}};
    for (int i = 0; i < 4; i++)
        list_push_back(&head, &items[i].node);
    struct list_node *it, *tmp;
    list_for_each_safe(it, tmp, &head)
    {
        if (list_entry(it, struct item, node)->value % 2 == 0)
            list_unlink(it);
    }
    assert_int_equal(values_in_order(&head), 13);
    assert_false(list_is_linked(&items[1].node));
    assert_false(list_is_linked(&items[3].node));
}

static void test_splice_moves_every_node_in_order_and_empties_the_source(void **state)
{
    struct list_node to, from;
    list_init(&to);
    list_init(&from);
    struct item a = {.value = 1}, b = {.value = 2}, c = {.value = 3};
    list_push_back(&to, &a.node);
    list_push_back(&from, &b.node);
    list_push_back(&from, &c.node);
    list_splice_back(&to, &from);
    assert_true(list_is_empty(&from));
    assert_int_equal(values_in_order(&to), 123);
    /* Splicing an empty list changes nothing. */
    list_splice_back(&to, &from);
    assert_int_equal(values_in_order(&to), 123);
    /* Into an empty list, too. */
    list_splice_back(&from, &to);
    assert_true(list_is_empty(&to));
    assert_int_equal(values_in_order(&from), 123);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_new_list_is_empty_and_a_zeroed_node_is_on_no_list),
        cmocka_unit_test(test_push_back_keeps_fifo_order_and_pop_front_takes_the_oldest),
        cmocka_unit_test(test_unlinking_from_the_middle_leaves_the_rest_in_order_and_the_node_free),
        cmocka_unit_test(test_a_walk_may_unlink_the_node_it_stands_on),
        cmocka_unit_test(test_splice_moves_every_node_in_order_and_empties_the_source),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
