/* Unit tests for fuse/tree.c: the inode table of the mounted tree. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>
#include <glib.h>

#include "tree.h"

static char *render_hello(struct tree_node *node)
{
    (void)node;
    return g_strdup("hello\n");
}

static const struct tree_text_ops hello_ops = { .render = render_hello };

static bool collect_name(struct tree_node *child, void *opaque)
{
    g_string_append_printf(opaque, "%s ", child->name);
    return true;
}

static bool collect_first(struct tree_node *child, void *opaque)
{
    g_string_append_printf(opaque, "%s ", child->name);
    return false;
}

static char *listing(struct tree *tree, struct tree_node *dir,
                     uint64_t after)
{
    GString *names = g_string_new(NULL);

    tree_list(tree, dir, after, collect_name, names);
    return g_string_free(names, FALSE);
}

static void test_root(void **state)
{
    struct tree *tree = tree_new();

    (void)state;
    assert_int_equal(tree->root->ino, TREE_ROOT_INO);
    assert_int_equal(tree->root->kind, TREE_NODE_DIR);
    assert_ptr_equal(tree->root->parent, tree->root);
    assert_int_equal(tree->root->mode, 0755);
    assert_ptr_equal(tree_find(tree, TREE_ROOT_INO), tree->root);
    assert_null(tree_find(tree, 2));
    tree_free(tree);
}

static void test_add_lookup_find(void **state)
{
    struct tree *tree = tree_new();
    struct tree_node *root = tree->root;
    int data;

    (void)state;
    struct tree_node *chains = tree_add(tree, root, ".chains", TREE_NODE_DIR,
                                        0755, 0.0, NULL);
    struct tree_node *vm = tree_add(tree, root, "vm", TREE_NODE_DISK,
                                    0600, 1.0, &data);
    struct tree_node *text = tree_add_text(tree, chains, "vm", 0644,
                                           &hello_ops, &data);
    assert_non_null(chains);
    assert_non_null(vm);
    assert_non_null(text);

    /* Inode numbers are distinct, stable and findable. */
    assert_int_equal(chains->ino, 2);
    assert_int_equal(vm->ino, 3);
    assert_int_equal(text->ino, 4);
    assert_ptr_equal(tree_find(tree, 3), vm);
    assert_ptr_equal(tree_lookup(tree, root, "vm"), vm);
    assert_ptr_equal(tree_lookup(tree, chains, "vm"), text);
    assert_null(tree_lookup(tree, root, "nope"));
    assert_null(tree_lookup(tree, vm, "x"));     /* not a directory */

    assert_ptr_equal(vm->data, &data);
    assert_int_equal(vm->mode, 0600);
    assert_true(vm->timeout == 1.0);
    assert_ptr_equal(text->text_ops, &hello_ops);
    assert_true(text->timeout == 0.0);
    g_autofree char *content = text->text_ops->render(text);
    assert_string_equal(content, "hello\n");

    /* A taken name is refused; a file cannot hold children. */
    assert_null(tree_add(tree, root, "vm", TREE_NODE_DISK, 0600, 1.0, NULL));
    assert_null(tree_add(tree, vm, "x", TREE_NODE_DISK, 0600, 1.0, NULL));

    assert_int_equal(tree_count_subdirs(tree, root), 1);
    assert_int_equal(tree_count_subdirs(tree, chains), 0);
    tree_free(tree);
}

static void test_listing_order_and_resume(void **state)
{
    struct tree *tree = tree_new();
    struct tree_node *root = tree->root;

    (void)state;
    struct tree_node *a = tree_add(tree, root, "a", TREE_NODE_DISK, 0600,
                                   1.0, NULL);
    struct tree_node *b = tree_add(tree, root, "b", TREE_NODE_DISK, 0600,
                                   1.0, NULL);
    tree_add(tree, root, "c", TREE_NODE_DISK, 0600, 1.0, NULL);

    g_autofree char *all = listing(tree, root, 0);
    assert_string_equal(all, "a b c ");
    g_autofree char *after_a = listing(tree, root, a->dir_cookie);
    assert_string_equal(after_a, "b c ");

    /* Stopping early: the callback's false ends the walk. */
    GString *first = g_string_new(NULL);
    tree_list(tree, root, 0, collect_first, first);
    assert_string_equal(first->str, "a ");
    g_string_free(first, TRUE);

    /* Removing an entry already listed does not disturb a resumed
     * listing; new entries come last. */
    tree_remove(tree, a);
    tree_add(tree, root, "d", TREE_NODE_DISK, 0600, 1.0, NULL);
    g_autofree char *resumed = listing(tree, root, b->dir_cookie);
    assert_string_equal(resumed, "c d ");
    tree_free(tree);
}

static void test_remove(void **state)
{
    struct tree *tree = tree_new();
    struct tree_node *root = tree->root;

    (void)state;
    struct tree_node *jobs = tree_add(tree, root, ".jobs", TREE_NODE_DIR,
                                      0755, 0.0, NULL);
    struct tree_node *job = tree_add(tree, jobs, "m1", TREE_NODE_DIR, 0755,
                                     0.0, NULL);
    struct tree_node *status = tree_add_text(tree, job, "status", 0644,
                                             &hello_ops, NULL);
    uint64_t job_ino = job->ino, status_ino = status->ino;

    assert_int_equal(tree_count_subdirs(tree, jobs), 1);
    tree_remove(tree, job);

    /* Gone from the namespace, still found by inode number. */
    assert_null(tree_lookup(tree, jobs, "m1"));
    assert_int_equal(tree_count_subdirs(tree, jobs), 0);
    assert_ptr_equal(tree_find(tree, job_ino), job);
    assert_ptr_equal(tree_find(tree, status_ino), status);
    assert_true(job->unlinked);
    assert_true(status->unlinked);
    g_autofree char *left = listing(tree, jobs, 0);
    assert_string_equal(left, "");

    /* Nothing can be added under an unlinked directory; the name can be
     * used again, with a new inode number. */
    assert_null(tree_add(tree, job, "x", TREE_NODE_DIR, 0755, 0.0, NULL));
    struct tree_node *again = tree_add(tree, jobs, "m1", TREE_NODE_DIR,
                                       0755, 0.0, NULL);
    assert_non_null(again);
    assert_int_not_equal(again->ino, job_ino);

    /* Removing twice, or the root, changes nothing. */
    tree_remove(tree, job);
    tree_remove(tree, root);
    assert_false(root->unlinked);
    tree_free(tree);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_root),
        cmocka_unit_test(test_add_lookup_find),
        cmocka_unit_test(test_listing_order_and_resume),
        cmocka_unit_test(test_remove),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
