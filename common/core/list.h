/* One intrusive doubly-linked list for every list of the servers: the node
 * lives inside the element (struct list_node member), so linking and
 * unlinking never allocate, and list_entry finds the element from its node.
 *
 * A list is a circular ring through a head node: an empty list is a head
 * pointing at itself. A node that is on no list has both pointers NULL, so
 * whether an element is on a list is asked of its node (list_is_linked),
 * never kept in a separate flag that could disagree with it. A node must be
 * zeroed (or list_node_init'ed) before its first use, and may be on at most
 * one list at a time. Pure: no allocation, no I/O.
 */
#ifndef EVS_LIST_H
#define EVS_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct list_node {
    struct list_node *prev;
    struct list_node *next;
};

/* The element of type `type` whose member `member` is the node at `ptr`. */
#define list_entry(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* Makes `head` an empty list. */
static inline void list_init(struct list_node *head)
{
    head->prev = head;
    head->next = head;
}

/* Marks `node` as on no list (what a zeroed node already is). */
static inline void list_node_init(struct list_node *node)
{
    node->prev = NULL;
    node->next = NULL;
}

static inline bool list_is_empty(const struct list_node *head)
{
    return head->next == head;
}

/* True while `node` is on a list. */
static inline bool list_is_linked(const struct list_node *node)
{
    return node->next != NULL;
}

/* Links `node`, which must be on no list, just before `pos`. */
static inline void list_insert_before(struct list_node *pos, struct list_node *node)
{
    node->prev = pos->prev;
    node->next = pos;
    pos->prev->next = node;
    pos->prev = node;
}

/* Appends `node`, which must be on no list, at the tail of `head`: FIFO order. */
static inline void list_push_back(struct list_node *head, struct list_node *node)
{
    list_insert_before(head, node);
}

/* Takes `node` off its list; then it is on no list. `node` must be linked. */
static inline void list_unlink(struct list_node *node)
{
    node->prev->next = node->next;
    node->next->prev = node->prev;
    node->prev = NULL;
    node->next = NULL;
}

/* The first node of `head`, or NULL when the list is empty. */
static inline struct list_node *list_front(const struct list_node *head)
{
    return list_is_empty(head) ? NULL : head->next;
}

/* Unlinks and returns the first node of `head`, or NULL when it is empty. */
static inline struct list_node *list_pop_front(struct list_node *head)
{
    struct list_node *node = list_front(head);
    if (node != NULL)
        list_unlink(node);
    return node;
}

/* Moves every node of `from` to the tail of `to`, in order; `from` is left
 * empty. Lets a sweep take the list it walks before it calls out, so that
 * nodes linked during the walk wait for the next sweep. */
static inline void list_splice_back(struct list_node *to, struct list_node *from)
{
    if (list_is_empty(from))
        return;
    from->next->prev = to->prev;
    to->prev->next = from->next;
    from->prev->next = to;
    to->prev = from->prev;
    list_init(from);
}

/* Walks `head` from front to back with `it` as the current node; `it` may be
 * unlinked (or its element freed) in the body, `tmp` holds the next one. */
#define list_for_each_safe(it, tmp, head)                                                          \
    for ((it) = (head)->next, (tmp) = (it)->next; (it) != (head); (it) = (tmp), (tmp) = (it)->next)

#endif
