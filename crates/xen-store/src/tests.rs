// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Behaviour tests through the wire (a test guest on a ring page) and the
//! client API: every message type and its errors, permissions, quotas,
//! transactions (the worked examples of C xenstored's `transaction.c` and
//! QEMU's `test-xs-node` cases), watches, the domain tree, snapshots.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use xen_abi::io::xs_wire::XsdSockmsgType as T;

use crate::testing::{TestGuest, split, store_with, z};
use crate::{Config, DomainInfo, Perm, Quota, State, Store};

fn err<V>(name: &str) -> Result<V, String> {
    Err(name.to_owned())
}

/// A guest and a client on the same store, with `/local/domain/1/some`
/// owned by the guest (QEMU's test-xs-node setup).
fn setup() -> (TestGuest, crate::Client) {
    let g = TestGuest::new();
    let c = g.store.client();
    c.write("/local/domain/1/some", "").unwrap();
    c.set_perms("/local/domain/1/some", &[Perm::none(1)])
        .unwrap();
    (g, c)
}

fn events(g: &mut TestGuest) -> Vec<String> {
    g.take_events()
        .into_iter()
        .map(|(p, t)| format!("{p}|{t}"))
        .collect()
}

// ---- READ / WRITE / MKDIR / RM / DIRECTORY ----

#[test]
fn test_read_existing_and_missing_nodes() {
    let mut g = TestGuest::new();
    assert_eq!(g.read("name").unwrap(), b"guest");
    assert_eq!(g.read("/local/domain/1/domid").unwrap(), b"1");
    assert_eq!(g.read("data/nothing"), err("ENOENT"));
}

#[test]
fn test_read_hides_existence_behind_unreadable_parent() {
    let mut g = TestGuest::new();
    assert_eq!(g.read("/local/domain/0/nothing"), err("EACCES"));
    assert_eq!(g.read("/local/domain/0/name"), err("EACCES"));
    assert_eq!(g.read("/tool/xenstored"), err("EACCES"));
}

#[test]
fn test_read_bad_payload_and_paths_einval() {
    let mut g = TestGuest::new();
    assert_eq!(g.call(T::Read, 0, b"name"), err("EINVAL"));
    assert_eq!(g.call(T::Read, 0, b"na\0me\0"), err("EINVAL"));
    assert_eq!(g.call(T::Read, 0, b""), err("EINVAL"));
    assert_eq!(g.read("data//x"), err("EINVAL"));
    assert_eq!(g.read("data/"), err("EINVAL"));
    assert_eq!(g.read("data/x y"), err("EINVAL"));
    assert_eq!(g.read("@introduceDomain"), err("EINVAL"));
    let long = format!("data/{}", "a".repeat(2044));
    assert_eq!(g.read(&long), err("EINVAL"));
}

#[test]
fn test_write_creates_parents_owned_by_guest() {
    let mut g = TestGuest::new();
    g.write("data/a/b/c", "v").unwrap();
    assert_eq!(g.read("data/a/b/c").unwrap(), b"v");
    assert_eq!(g.read("data/a/b").unwrap(), b"");
    assert_eq!(g.get_perms("data/a").unwrap(), ["n1"]);
    assert_eq!(g.dir("data/a").unwrap(), ["b"]);
}

#[test]
fn test_write_unprivileged_creator_owns_with_inherited_acl() {
    let (mut g, c) = setup();
    c.write("/local/domain/1/shared", "").unwrap();
    c.set_perms("/local/domain/1/shared", &[Perm::none(0), Perm::both(1)])
        .unwrap();
    g.write("shared/x", "1").unwrap();
    assert_eq!(g.get_perms("shared/x").unwrap(), ["n1", "b1"]);
    // Domain 0 creating below keeps the parent's owner.
    c.write("/local/domain/1/shared/y", "2").unwrap();
    assert_eq!(g.get_perms("shared/y").unwrap(), ["n0", "b1"]);
}

#[test]
fn test_write_keeps_binary_values() {
    let mut g = TestGuest::new();
    let mut p = z("data/bin");
    p.extend_from_slice(&[0, 1, 0, 255]);
    assert_eq!(g.call(T::Write, 0, &p).unwrap(), b"OK\0");
    assert_eq!(g.read("data/bin").unwrap(), [0, 1, 0, 255]);
    assert_eq!(g.call(T::Write, 0, b"data/x"), err("EINVAL"));
}

#[test]
fn test_write_without_permission_eacces() {
    let mut g = TestGuest::new();
    assert_eq!(g.write("name", "x"), err("EACCES"));
    assert_eq!(g.write("newnode", "x"), err("EACCES"));
    assert_eq!(g.write("/local/domain/badplace", "x"), err("EACCES"));
    assert_eq!(g.write("@introduceDomain", "x"), err("EINVAL"));
}

#[test]
fn test_mkdir_creates_once_and_checks_permission() {
    let mut g = TestGuest::new();
    g.watch("data", "w").unwrap();
    g.take_events();
    g.mkdir("data/d").unwrap();
    assert_eq!(events(&mut g), ["data/d|w"]);
    g.write("data/d", "keep").unwrap();
    g.take_events();
    g.mkdir("data/d").unwrap();
    assert!(events(&mut g).is_empty());
    assert_eq!(g.read("data/d").unwrap(), b"keep");
    assert_eq!(g.mkdir("cpu"), err("EACCES"));
    assert_eq!(g.mkdir("forbidden/x"), err("EACCES"));
}

#[test]
fn test_rm_subtree_missing_node_and_missing_parent() {
    let mut g = TestGuest::new();
    g.write("data/a/b/c", "1").unwrap();
    g.rm("data/a").unwrap();
    assert_eq!(g.read("data/a/b/c"), err("ENOENT"));
    assert_eq!(g.dir("data").unwrap(), Vec::<String>::new());
    g.rm("data/a").unwrap();
    assert_eq!(g.rm("data/a/b"), err("ENOENT"));
    assert_eq!(g.rm("name"), err("EACCES"));
    assert_eq!(g.rm("/"), err("EACCES"));
    assert_eq!(g.call(T::Rm, 0, b"data"), err("EINVAL"));
}

#[test]
fn test_rm_root_by_dom0_einval() {
    let g = TestGuest::new();
    let c = g.store.client();
    assert_eq!(c.rm("/"), Err(xen_abi::errno::XenErrno::EINVAL));
}

#[test]
fn test_directory_lists_in_creation_order() {
    let mut g = TestGuest::new();
    for n in ["z", "a", "m"] {
        g.write(&format!("data/{n}"), "").unwrap();
    }
    assert_eq!(g.dir("data").unwrap(), ["z", "a", "m"]);
    assert_eq!(g.dir("data/none"), err("ENOENT"));
    assert_eq!(g.dir("/local/domain/0"), err("EACCES"));
}

#[test]
fn test_directory_too_long_e2big_and_directory_part_pages() {
    let mut g = TestGuest::new();
    let c = g.store.client();
    let mut names = Vec::new();
    for i in 0..300 {
        let n = format!("child-with-a-rather-long-name-{i:04}");
        c.write(&format!("/local/domain/1/big/{n}"), "").unwrap();
        names.push(n);
    }
    assert_eq!(g.dir("big"), err("E2BIG"));
    // DIRECTORY_PART: generation, then names from an offset; the final
    // part ends with an extra NUL.
    let mut all = Vec::new();
    let mut off = 0usize;
    let mut generation = None;
    loop {
        let mut p = z("big");
        p.extend(z(&off.to_string()));
        let r = g.call(T::DirectoryPart, 0, &p).unwrap();
        let parts = split(&r);
        match generation {
            None => generation = Some(parts[0].clone()),
            Some(ref g0) => assert_eq!(g0, &parts[0]),
        }
        let end = r.ends_with(b"\0\0");
        let names_here: Vec<String> = parts[1..]
            .iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect();
        off += names_here.iter().map(|s| s.len() + 1).sum::<usize>();
        all.extend(names_here);
        if end {
            break;
        }
    }
    assert_eq!(all, names);
    let mut p = z("big");
    p.extend(z("999999"));
    let r = g.call(T::DirectoryPart, 0, &p).unwrap();
    assert!(r.ends_with(b"\0\0"));
    assert_eq!(g.call(T::DirectoryPart, 0, &z("big")), err("EINVAL"));
}

// ---- Permissions ----

#[test]
fn test_get_perms_of_home_and_special_nodes() {
    let mut g = TestGuest::new();
    assert_eq!(g.get_perms("").err(), Some("EINVAL".into()));
    assert_eq!(g.get_perms("/local/domain/1").unwrap(), ["n0", "r1"]);
    assert_eq!(g.get_perms("control/shutdown").unwrap(), ["n1"]);
    assert_eq!(g.get_perms("@introduceDomain"), err("EACCES"));
}

#[test]
fn test_set_perms_owner_only_and_owner_fixed() {
    let mut g = TestGuest::new();
    g.write("data/x", "").unwrap();
    g.set_perms("data/x", &["n1", "r0"]).unwrap();
    assert_eq!(g.get_perms("data/x").unwrap(), ["n1", "r0"]);
    assert_eq!(g.set_perms("data/x", &["n0"]), err("EPERM"));
    assert_eq!(g.set_perms("name", &["n1"]), err("EACCES"));
    assert_eq!(g.set_perms("data/none", &["n1"]), err("ENOENT"));
}

#[test]
fn test_set_perms_argument_errors() {
    let mut g = TestGuest::new();
    g.write("data/x", "").unwrap();
    assert_eq!(g.set_perms("data/x", &[]), err("EINVAL"));
    assert_eq!(g.set_perms("data/x", &["x1"]), err("EINVAL"));
    assert_eq!(g.set_perms("data/x", &["r"]), err("EINVAL"));
    assert_eq!(
        g.set_perms("data/x", &["n1", "r1", "r1", "r1", "r1", "r1"]),
        err("ENOSPC")
    );
    g.set_perms("data/x", &["n1", "r1", "r1", "r1", "r1"])
        .unwrap();
    // The owner must exist.
    assert_eq!(g.set_perms("data/x", &["n7"]), err("ENOENT"));
}

#[test]
fn test_perms_first_matching_entry_wins() {
    let (mut g, c) = setup();
    c.write("/local/domain/1/acl", "v").unwrap();
    c.set_perms(
        "/local/domain/1/acl",
        &[Perm::none(0), Perm::read(1), Perm::both(1)],
    )
    .unwrap();
    assert_eq!(g.read("acl").unwrap(), b"v");
    assert_eq!(g.write("acl", "x"), err("EACCES"));
    // Default from entry 0.
    c.set_perms("/local/domain/1/acl", &[Perm::write(0)])
        .unwrap();
    assert_eq!(g.read("acl"), err("EACCES"));
    g.write("acl", "y").unwrap();
}

#[test]
fn test_perms_unknown_domain_entries_are_ignored() {
    let (mut g, c) = setup();
    c.write("/local/domain/1/p", "v").unwrap();
    c.set_perms(
        "/local/domain/1/p",
        &[Perm::none(0), Perm::both(9), Perm::read(1)],
    )
    .unwrap();
    let perms = c.get_perms("/local/domain/1/p").unwrap();
    assert!(perms[1].ignored && !perms[2].ignored);
    assert_eq!(g.get_perms("p").unwrap(), ["n0", "b9", "r1"]);
    assert_eq!(g.read("p").unwrap(), b"v");
}

// ---- WATCH / UNWATCH / RESET_WATCHES ----

#[test]
fn test_watch_fires_at_once_relative_and_absolute() {
    let (mut g, _c) = setup();
    g.watch("some", "rel").unwrap();
    g.watch("/local/domain/1/some", "abs").unwrap();
    assert_eq!(events(&mut g), ["some|rel", "/local/domain/1/some|abs"]);
    g.write("some/relative/path", "x").unwrap();
    assert_eq!(
        events(&mut g),
        [
            "some/relative/path|rel",
            "/local/domain/1/some/relative/path|abs"
        ]
    );
}

#[test]
fn test_watch_duplicate_eexist_unwatch_enoent() {
    let mut g = TestGuest::new();
    g.watch("data", "t").unwrap();
    assert_eq!(g.watch("data", "t"), err("EEXIST"));
    assert_eq!(g.watch("/local/domain/1/data", "t"), err("EEXIST"));
    g.watch("data", "t2").unwrap();
    g.unwatch("data", "t").unwrap();
    assert_eq!(g.unwatch("data", "t"), err("ENOENT"));
    assert_eq!(g.watch("data//x", "t"), err("EINVAL"));
    assert_eq!(g.call(T::Watch, 0, b"data\0"), err("EINVAL"));
    assert_eq!(g.call(T::Unwatch, 0, b"data\0t2\0x\0"), err("EINVAL"));
}

#[test]
fn test_watch_ignores_transaction_id() {
    let mut g = TestGuest::new();
    let mut p = z("data");
    p.extend(z("t"));
    assert_eq!(g.call(T::Watch, 77, &p).unwrap(), b"OK\0");
}

#[test]
fn test_watch_depth_limits_levels() {
    let mut g = TestGuest::new();
    let mut p = z("data");
    p.extend(z("d1"));
    p.extend(z("1"));
    g.call(T::Watch, 0, &p).unwrap();
    g.take_events();
    g.write("data/a", "").unwrap();
    g.write("data/a/b", "").unwrap();
    assert_eq!(events(&mut g), ["data/a|d1"]);
    let mut p = z("data");
    p.extend(z("neg"));
    p.extend(z("-1"));
    assert_eq!(g.call(T::Watch, 0, &p), err("EINVAL"));
}

#[test]
fn test_watch_recursive_delete_fires_each_watched_descendant() {
    let (mut g, _c) = setup();
    g.write("some/relative/path", "1").unwrap();
    g.write("some/relative/path2", "2").unwrap();
    g.watch("some/relative/path2", "p2").unwrap();
    g.watch("/local/domain/1/some/relative", "rel").unwrap();
    g.watch("some", "top").unwrap();
    g.take_events();
    g.rm("some/relative").unwrap();
    let ev = events(&mut g);
    assert!(ev.contains(&"some/relative/path2|p2".to_owned()), "{ev:?}");
    assert!(ev.contains(&"/local/domain/1/some/relative|rel".to_owned()));
    // The ancestor's watch fires once, for the topmost removed node.
    assert_eq!(ev.iter().filter(|e| e.ends_with("|top")).count(), 1);
    assert!(ev.contains(&"some/relative|top".to_owned()));
}

#[test]
fn test_watch_events_filtered_by_permission() {
    let mut g = TestGuest::new();
    let c = g.store.client();
    c.write("/local/domain/0/backend/x", "").unwrap();
    g.watch("/local/domain/0/backend", "be").unwrap();
    g.take_events();
    c.write("/local/domain/0/backend/x/state", "1").unwrap();
    assert!(events(&mut g).is_empty());
    c.set_perms("/local/domain/0/backend/x", &[Perm::none(0), Perm::read(1)])
        .unwrap();
    assert_eq!(events(&mut g), ["/local/domain/0/backend/x|be"]);
    // The parent is readable: the child's event passes.
    c.write("/local/domain/0/backend/x/state", "2").unwrap();
    assert_eq!(events(&mut g), ["/local/domain/0/backend/x/state|be"]);
}

#[test]
fn test_watch_special_needs_permission_on_special_node() {
    let mut g = TestGuest::new();
    let c = g.store.client();
    g.watch("@introduceDomain", "intro").unwrap();
    g.watch("@releaseDomain", "rel").unwrap();
    assert_eq!(
        events(&mut g),
        ["@introduceDomain|intro", "@releaseDomain|rel"]
    );
    g.store
        .introduce_domain(&DomainInfo::new(2, "two"))
        .unwrap();
    assert!(events(&mut g).is_empty());
    c.set_perms("@introduceDomain", &[Perm::none(0), Perm::read(1)])
        .unwrap();
    c.set_perms("@releaseDomain", &[Perm::none(0), Perm::read(1)])
        .unwrap();
    g.take_events();
    g.store
        .introduce_domain(&DomainInfo::new(3, "three"))
        .unwrap();
    assert_eq!(events(&mut g), ["@introduceDomain|intro"]);
    g.store.release_domain(3).unwrap();
    assert_eq!(events(&mut g), ["@releaseDomain|rel"]);
}

#[test]
fn test_reset_watches_drops_watches_and_transactions() {
    let mut g = TestGuest::new();
    g.watch("data", "w").unwrap();
    let tx = g.tx_start().unwrap();
    g.take_events();
    g.call(T::ResetWatches, 0, b"\0").unwrap();
    g.write("data/x", "1").unwrap();
    assert!(events(&mut g).is_empty());
    assert_eq!(g.read_tx(tx, "name"), err("ENOENT"));
}

// ---- Transactions ----

#[test]
fn test_transaction_ids_nonzero_not_reused_while_live() {
    let mut g = TestGuest::new();
    let a = g.tx_start().unwrap();
    let b = g.tx_start().unwrap();
    assert!(a != 0 && b != 0 && a != b);
    g.tx_end(a, false).unwrap();
    let c = g.tx_start().unwrap();
    assert!(c != b);
}

#[test]
fn test_transaction_errors() {
    let mut g = TestGuest::new();
    let tx = g.tx_start().unwrap();
    assert_eq!(g.call(T::TransactionStart, tx, b"\0"), err("EBUSY"));
    assert_eq!(g.call(T::TransactionStart, 999, b"\0"), err("ENOENT"));
    assert_eq!(g.read_tx(999, "name"), err("ENOENT"));
    assert_eq!(g.call(T::TransactionEnd, tx, b"X\0"), err("EINVAL"));
    assert_eq!(g.call(T::TransactionEnd, 0, b"T\0"), err("ENOENT"));
    g.tx_end(tx, true).unwrap();
    assert_eq!(g.tx_end(tx, true), err("ENOENT"));
}

#[test]
fn test_transaction_replies_echo_ids() {
    let mut g = TestGuest::new();
    let tx = g.tx_start().unwrap();
    let (h, _) = g.request_tx(T::Read.raw(), tx, &z("name"));
    assert_eq!((h.type_, h.tx_id), (T::Read.raw(), tx));
    let (h, p) = g.request_tx(T::Read.raw(), tx, &z("nothing"));
    assert_eq!((h.type_, h.tx_id), (T::Error.raw(), tx));
    assert_eq!(p, b"ENOENT\0");
}

/// transaction.c example 1: read A, write B, commit.
#[test]
fn test_transaction_example1_read_write_commits() {
    let mut g = TestGuest::new();
    g.write("data/A", "a").unwrap();
    g.write("data/B", "b").unwrap();
    let tx = g.tx_start().unwrap();
    assert_eq!(g.read_tx(tx, "data/A").unwrap(), b"a");
    g.write_tx(tx, "data/B", "b1").unwrap();
    assert_eq!(g.read("data/B").unwrap(), b"b");
    g.tx_end(tx, true).unwrap();
    assert_eq!(g.read("data/B").unwrap(), b"b1");
}

/// Example 2: a write to a node the transaction read conflicts.
#[test]
fn test_transaction_example2_conflicting_write_eagain() {
    let mut g = TestGuest::new();
    g.write("data/A", "a").unwrap();
    g.write("data/B", "b").unwrap();
    let tx = g.tx_start().unwrap();
    g.read_tx(tx, "data/A").unwrap();
    g.write("data/A", "a2").unwrap();
    g.write_tx(tx, "data/B", "b1").unwrap();
    assert_eq!(g.tx_end(tx, true), err("EAGAIN"));
    assert_eq!(g.read("data/B").unwrap(), b"b");
}

/// Example 3: deleting a node the transaction read conflicts.
#[test]
fn test_transaction_example3_conflicting_delete_eagain() {
    let mut g = TestGuest::new();
    g.write("data/A", "a").unwrap();
    g.write("data/B", "b").unwrap();
    let tx = g.tx_start().unwrap();
    g.read_tx(tx, "data/A").unwrap();
    g.store.client().rm("/local/domain/1/data/A").unwrap();
    g.write_tx(tx, "data/B", "b1").unwrap();
    assert_eq!(g.tx_end(tx, true), err("EAGAIN"));
}

/// Example 4: two transactions, each reading what the other writes.
#[test]
fn test_transaction_example4_interfering_transactions() {
    let mut g = TestGuest::new();
    g.write("data/A", "a").unwrap();
    g.write("data/B", "b").unwrap();
    let t1 = g.tx_start().unwrap();
    let t2 = g.tx_start().unwrap();
    g.read_tx(t1, "data/A").unwrap();
    g.read_tx(t2, "data/B").unwrap();
    g.write_tx(t1, "data/B", "1").unwrap();
    g.write_tx(t2, "data/A", "2").unwrap();
    g.tx_end(t1, true).unwrap();
    assert_eq!(g.tx_end(t2, true), err("EAGAIN"));
    assert_eq!(g.read("data/A").unwrap(), b"a");
    assert_eq!(g.read("data/B").unwrap(), b"1");
}

#[test]
fn test_transaction_unrelated_change_does_not_conflict() {
    let mut g = TestGuest::new();
    let c = g.store.client();
    g.write("data/A", "a").unwrap();
    let tx = g.tx_start().unwrap();
    g.read_tx(tx, "data/A").unwrap();
    g.write_tx(tx, "data/A", "mine").unwrap();
    // A back end busy elsewhere (QEMU would fail this commit).
    c.write("/local/domain/0/backend/vbd/1/0/state", "2")
        .unwrap();
    g.write("control/shutdown", "").unwrap();
    g.tx_end(tx, true).unwrap();
    assert_eq!(g.read("data/A").unwrap(), b"mine");
}

#[test]
fn test_transaction_sibling_creation_conflicts_on_parent() {
    let mut g = TestGuest::new();
    let tx = g.tx_start().unwrap();
    g.write_tx(tx, "data/x", "1").unwrap();
    g.write("data/y", "2").unwrap();
    assert_eq!(g.tx_end(tx, true), err("EAGAIN"));
}

#[test]
fn test_transaction_read_of_missing_node_conflicts_when_created() {
    let mut g = TestGuest::new();
    let tx = g.tx_start().unwrap();
    assert_eq!(g.read_tx(tx, "data/later"), err("ENOENT"));
    g.write("data/later", "1").unwrap();
    g.write_tx(tx, "data/other", "1").unwrap();
    assert_eq!(g.tx_end(tx, true), err("EAGAIN"));
}

fn tx_case(fail: bool, commit: bool) {
    let (mut g, _c) = setup();
    g.watch("some", "watch").unwrap();
    assert_eq!(events(&mut g), ["some|watch"]);
    g.write("some/relative/path", "something").unwrap();
    assert_eq!(events(&mut g), ["some/relative/path|watch"]);
    let tx = g.tx_start().unwrap();
    if fail {
        // C xenstored conflicts on nodes the transaction read before the
        // outside change (QEMU fails on any outside commit).
        g.read_tx(tx, "some/relative/path").unwrap();
        g.write("some/relative/path", "another thing").unwrap();
        assert_eq!(events(&mut g), ["some/relative/path|watch"]);
    }
    g.write_tx(tx, "some/relative/path", "something else")
        .unwrap();
    assert!(events(&mut g).is_empty());
    let outside: &[u8] = if fail { b"another thing" } else { b"something" };
    assert_eq!(g.read("some/relative/path").unwrap(), outside);
    assert_eq!(
        g.read_tx(tx, "some/relative/path").unwrap(),
        b"something else"
    );
    check_restore(&g.store);
    let r = g.tx_end(tx, commit);
    if commit && fail {
        assert_eq!(r, err("EAGAIN"));
    } else {
        r.unwrap();
    }
    if commit && !fail {
        assert_eq!(events(&mut g), ["some/relative/path|watch"]);
    } else {
        assert!(events(&mut g).is_empty());
    }
    let expect: &[u8] = match (fail, commit) {
        (true, _) => b"another thing",
        (false, true) => b"something else",
        (false, false) => b"something",
    };
    assert_eq!(g.read("some/relative/path").unwrap(), expect);
}

/// QEMU's `tx_fail` sequence without the read: the transaction first
/// touches the node after the outside write, so C xenstored commits it.
#[test]
fn test_transaction_first_access_after_outside_write_commits() {
    let (mut g, _c) = setup();
    g.write("some/relative/path", "something").unwrap();
    let tx = g.tx_start().unwrap();
    g.write("some/relative/path", "another thing").unwrap();
    g.write_tx(tx, "some/relative/path", "something else")
        .unwrap();
    g.tx_end(tx, true).unwrap();
    assert_eq!(g.read("some/relative/path").unwrap(), b"something else");
}

/// QEMU test-xs-node `tx_abort`.
#[test]
fn test_qemu_tx_abort() {
    tx_case(false, false);
    tx_case(true, false);
}

/// QEMU test-xs-node `tx_fail`.
#[test]
fn test_qemu_tx_fail() {
    tx_case(true, true);
}

/// QEMU test-xs-node `tx_succeed`.
#[test]
fn test_qemu_tx_succeed() {
    tx_case(false, true);
}

/// QEMU test-xs-node `simple`, with C xenstored's answers.
#[test]
fn test_qemu_simple() {
    let (mut g, c) = setup();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let _w = c
        .watch("/local/domain/1/some", move |p| {
            s.lock().unwrap().push(p.to_owned())
        })
        .unwrap();
    g.watch("some", "guestwatch").unwrap();
    assert_eq!(events(&mut g), ["some|guestwatch"]);
    assert_eq!(*seen.lock().unwrap(), ["/local/domain/1/some"]);
    assert_eq!(g.read("foo"), err("ENOENT"));
    g.write("some/relative/path", "something").unwrap();
    assert_eq!(events(&mut g), ["some/relative/path|guestwatch"]);
    assert_eq!(
        seen.lock().unwrap().last().unwrap(),
        "/local/domain/1/some/relative/path"
    );
    assert_eq!(
        g.read("/local/domain/1/some/relative/path").unwrap(),
        b"something"
    );
    assert_eq!(g.write("/local/domain/badplace", "moredata"), err("EACCES"));
    g.write("/local/domain/1/some/relative/path2", "something else")
        .unwrap();
    g.write("some/relative/path", "another thing").unwrap();
    assert_eq!(g.dir("some/relative").unwrap(), ["path", "path2"]);
    g.unwatch("some", "guestwatch").unwrap();
    assert_eq!(g.unwatch("some", "guestwatch"), err("ENOENT"));
    g.take_events();
    g.watch("some/relative/path2", "watchp2").unwrap();
    g.watch("/local/domain/1/some/relative", "watchrel")
        .unwrap();
    g.take_events();
    g.rm("some/relative").unwrap();
    let ev = events(&mut g);
    assert!(ev.contains(&"some/relative/path2|watchp2".to_owned()));
    assert!(ev.contains(&"/local/domain/1/some/relative|watchrel".to_owned()));
    assert_eq!(g.read("some/relative"), err("ENOENT"));
}

/// QEMU test-xs-node `tx_rm`: one event, for the removed subtree's top.
#[test]
fn test_qemu_tx_rm() {
    let (mut g, _c) = setup();
    g.watch("some", "watch").unwrap();
    g.write("some/deep/dark/relative/path", "something")
        .unwrap();
    g.take_events();
    let tx = g.tx_start().unwrap();
    g.rm_tx(tx, "some/deep/dark").unwrap();
    assert!(events(&mut g).is_empty());
    assert_eq!(
        g.read("some/deep/dark/relative/path").unwrap(),
        b"something"
    );
    check_restore(&g.store);
    g.tx_end(tx, true).unwrap();
    assert_eq!(events(&mut g), ["some/deep/dark|watch"]);
    assert_eq!(g.read("some/deep/dark/relative/path"), err("ENOENT"));
}

/// The tree of QEMU's `tx_resurrect` tests, watched at `some`, and a
/// transaction that removed `some/deep`.
fn resurrect_setup(g: &mut TestGuest) -> u32 {
    g.write("some/deep/dark/relative/path", "something")
        .unwrap();
    g.write("some/place/safe", "keepme").unwrap();
    g.write("some/deep/dark", "foo").unwrap();
    g.watch("some", "watch").unwrap();
    g.take_events();
    let tx = g.tx_start().unwrap();
    g.rm_tx(tx, "some/deep").unwrap();
    tx
}

/// QEMU test-xs-node `tx_resurrect`, with C xenstored's events: the
/// removed top and the new node (QEMU also reports every lost node).
#[test]
fn test_qemu_tx_resurrect() {
    let (mut g, _c) = setup();
    let tx = resurrect_setup(&mut g);
    g.write_tx(tx, "some/deep/dark/different/path", "something")
        .unwrap();
    check_restore(&g.store);
    g.tx_end(tx, true).unwrap();
    let ev = events(&mut g);
    assert!(ev.contains(&"some/deep|watch".to_owned()), "{ev:?}");
    assert!(ev.contains(&"some/deep/dark/different/path|watch".to_owned()));
    assert_eq!(g.read("some/deep/dark/relative/path"), err("ENOENT"));
    assert_eq!(g.read("some/deep/dark").unwrap(), b"");
    assert_eq!(g.read("some/place/safe").unwrap(), b"keepme");
}

/// QEMU test-xs-node `tx_resurrect2`: the same path comes back.
#[test]
fn test_qemu_tx_resurrect2() {
    let (mut g, _c) = setup();
    let tx = resurrect_setup(&mut g);
    g.write_tx(tx, "some/deep/dark/relative/path", "something")
        .unwrap();
    g.tx_end(tx, true).unwrap();
    let ev = events(&mut g);
    assert!(
        ev.contains(&"some/deep/dark/relative/path|watch".to_owned()),
        "{ev:?}"
    );
    assert!(ev.contains(&"some/deep|watch".to_owned()));
    assert_eq!(
        g.read("some/deep/dark/relative/path").unwrap(),
        b"something"
    );
    assert_eq!(g.read("some/deep/dark").unwrap(), b"");
}

#[test]
fn test_transaction_watches_fire_only_on_commit() {
    let mut g = TestGuest::new();
    g.watch("data", "w").unwrap();
    g.take_events();
    let tx = g.tx_start().unwrap();
    g.write_tx(tx, "data/x", "1").unwrap();
    g.mkdir("data/other").unwrap();
    assert_eq!(events(&mut g), ["data/other|w"]);
    assert_eq!(g.tx_end(tx, true), err("EAGAIN"));
    assert!(events(&mut g).is_empty());
}

// ---- Other message types ----

#[test]
fn test_get_domain_path_any_domid() {
    let mut g = TestGuest::new();
    assert_eq!(
        g.call(T::GetDomainPath, 0, b"5\0").unwrap(),
        z("/local/domain/5")
    );
    assert_eq!(
        g.call(T::GetDomainPath, 0, b"1\0").unwrap(),
        z("/local/domain/1")
    );
    assert_eq!(g.call(T::GetDomainPath, 0, b"1"), err("EINVAL"));
}

#[test]
fn test_get_feature_own_only() {
    let mut g = TestGuest::new();
    assert_eq!(g.call(T::GetFeature, 0, b"").unwrap(), z("7"));
    assert_eq!(g.call(T::GetFeature, 0, b"0\0"), err("EACCES"));
}

#[test]
fn test_privileged_types_eacces() {
    let mut g = TestGuest::new();
    for t in [
        T::Control,
        T::Introduce,
        T::Release,
        T::IsDomainIntroduced,
        T::Resume,
        T::SetTarget,
        T::SetFeature,
        T::GetQuota,
        T::SetQuota,
    ] {
        assert_eq!(g.call(t, 0, b"1\0"), err("EACCES"), "{t}");
    }
}

#[test]
fn test_unknown_types_enosys() {
    let mut g = TestGuest::new();
    for t in [15u32, 16, 20, 27, 100, 0xffff, u32::MAX] {
        let (h, p) = g.request_tx(t, 0, b"x\0");
        assert_eq!(
            (h.type_, p.as_slice()),
            (T::Error.raw(), &b"ENOSYS\0"[..]),
            "{t}"
        );
    }
}

// ---- Quotas ----

fn quota(f: impl FnOnce(&mut Quota)) -> Config {
    let mut c = Config::default();
    f(&mut c.quota);
    c
}

#[test]
fn test_quota_nodes_counts_owned_nodes() {
    let mut g = TestGuest::with_config(quota(|q| q.nodes = 20));
    let mut made = 0;
    let e = loop {
        match g.write(&format!("data/n{made}"), "") {
            Ok(()) => made += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(e, "ENOSPC");
    // The guest owns the toolstack's 15 guest-writable nodes.
    assert_eq!(made, 5);
    // Several new nodes at once do not fit either; removing frees.
    g.rm("data/n0").unwrap();
    assert_eq!(g.write("data/a/b", ""), err("ENOSPC"));
    g.write("data/a", "").unwrap();
    // Domain 0 is not limited.
    g.store
        .client()
        .write("/local/domain/1/data/z", "")
        .unwrap();
}

#[test]
fn test_quota_node_size_counts_perms_children_value() {
    let mut g = TestGuest::new();
    assert_eq!(g.write("data/big", &"x".repeat(2048 - 24)), Ok(()));
    assert_eq!(g.write("data/big", &"x".repeat(2048 - 23)), err("ENOSPC"));
    g.write("data/kids/aaaa", "").unwrap();
    // 16 + 8 + 5 * 400 children bytes would exceed.
    let mut failed = false;
    for i in 0..500 {
        if g.write(&format!("data/kids/{i:04}"), "").is_err() {
            failed = true;
            break;
        }
    }
    assert!(failed);
    g.store
        .client()
        .write("/local/domain/1/data/big", "x".repeat(4000))
        .unwrap();
}

#[test]
fn test_quota_watches_enospc() {
    let mut g = TestGuest::with_config(quota(|q| q.watches = 3));
    for i in 0..3 {
        g.watch("data", &format!("t{i}")).unwrap();
    }
    assert_eq!(g.watch("data", "t3"), err("ENOSPC"));
}

#[test]
fn test_quota_transactions_enospc() {
    let mut g = TestGuest::new();
    for _ in 0..10 {
        g.tx_start().unwrap();
    }
    assert_eq!(g.tx_start(), err("ENOSPC"));
}

#[test]
fn test_quota_transaction_nodes_fails_transaction() {
    let mut g = TestGuest::with_config(quota(|q| q.transaction_nodes = 4));
    let tx = g.tx_start().unwrap();
    g.read_tx(tx, "name").unwrap();
    g.read_tx(tx, "domid").unwrap();
    g.read_tx(tx, "vm").unwrap();
    g.read_tx(tx, "data").unwrap();
    assert_eq!(g.read_tx(tx, "store/port"), err("ENOSPC"));
    assert_eq!(g.tx_end(tx, true), err("ENOMEM"));
}

#[test]
fn test_quota_path_max_einval() {
    let mut g = TestGuest::with_config(quota(|q| q.path_max = 20));
    g.write("data/0123456789", "").unwrap();
    assert_eq!(g.write("data/01234567890123456", ""), err("EINVAL"));
}

#[test]
fn test_quota_node_count_checked_at_commit() {
    let mut g = TestGuest::with_config(quota(|q| q.nodes = 17));
    let tx = g.tx_start().unwrap();
    g.write_tx(tx, "data/a", "").unwrap();
    g.write_tx(tx, "data/b", "").unwrap();
    g.write("data/c", "").unwrap();
    assert_eq!(g.tx_end(tx, true), err("ENOSPC"));
}

#[test]
fn test_quota_config_validation() {
    assert!(Config::default().validate().is_ok());
    assert!(quota(|q| q.path_max = 4000).validate().is_err());
    assert!(quota(|q| q.outstanding = 0).validate().is_err());
    assert!(quota(|q| q.pending_events = 0).validate().is_err());
}

// ---- Client API ----

#[test]
fn test_client_basic_operations() {
    let store = Store::new(Config::default()).unwrap();
    let c = store.client();
    c.write("backend/vbd/1/0/state", "1").unwrap();
    assert_eq!(
        c.read_string("/local/domain/0/backend/vbd/1/0/state")
            .unwrap(),
        "1"
    );
    c.mkdir("/a/b").unwrap();
    assert_eq!(c.directory("/a").unwrap(), ["b"]);
    assert!(c.exists("/a/b"));
    c.rm("/a").unwrap();
    assert!(!c.exists("/a/b"));
    assert_eq!(c.get_perms("/").unwrap(), [Perm::none(0)]);
    assert_eq!(
        c.set_perms("/x", &[]),
        Err(xen_abi::errno::XenErrno::EINVAL)
    );
}

#[test]
fn test_client_watch_callback_gets_paths_and_may_reenter() {
    let store = Store::new(Config::default()).unwrap();
    let c = store.client();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (s, c2) = (seen.clone(), c.clone());
    let w = c
        .watch("/fe", move |p| {
            s.lock().unwrap().push(p.to_owned());
            // Re-entering the store from a callback works.
            if p == "/fe/state" && c2.read_string(p).unwrap() == "1" {
                c2.write("/fe/ack", "yes").unwrap();
            }
        })
        .unwrap();
    c.write("/fe/state", "1").unwrap();
    assert_eq!(*seen.lock().unwrap(), ["/fe", "/fe/state", "/fe/ack"]);
    drop(w);
    c.write("/fe/state", "2").unwrap();
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[test]
fn test_client_watch_relative_and_depth() {
    let store = Store::new(Config::default()).unwrap();
    let c = store.client();
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    let _w = c
        .watch_depth("backend", Some(0), move |p| {
            assert_eq!(p, "backend");
            n2.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    c.write("backend", "").unwrap();
    c.write("backend/x", "").unwrap();
    assert_eq!(n.load(Ordering::SeqCst), 2);
}

#[test]
fn test_client_transaction_commit_and_retry() {
    let store = Store::new(Config::default()).unwrap();
    let c = store.client();
    c.write("/n", "0").unwrap();
    let tx = c.transaction().unwrap();
    let v: u32 = tx.read_string("/n").unwrap().parse().unwrap();
    tx.write("/n", (v + 1).to_string()).unwrap();
    c.write("/n", "10").unwrap();
    assert_eq!(tx.commit(), Err(xen_abi::errno::XenErrno::EAGAIN));
    let mut tries = 0;
    c.transact(|tx| {
        tries += 1;
        let v: u32 = tx.read_string("/n")?.parse().unwrap();
        if tries == 1 {
            c.write("/n", "20").unwrap();
        }
        tx.write("/n", (v + 1).to_string())
    })
    .unwrap();
    assert_eq!(tries, 2);
    assert_eq!(c.read_string("/n").unwrap(), "21");
    let tx = c.transaction().unwrap();
    tx.write("/dropped", "x").unwrap();
    drop(tx);
    assert!(!c.exists("/dropped"));
}

#[test]
fn test_client_write_reaches_guest_ring_without_kick() {
    let mut g = TestGuest::new();
    g.watch("device", "dev").unwrap();
    g.take_events();
    let before = g.notified.load(Ordering::SeqCst);
    let c = g.store.client();
    c.write("/local/domain/1/device/vbd/51712/state", "1")
        .unwrap();
    assert!(g.notified.load(Ordering::SeqCst) > before);
    // Read straight from the ring, no kick.
    let got = g.pull_sorted();
    assert!(got.is_empty());
    assert_eq!(g.events, [("device/vbd/51712/state".into(), "dev".into())]);
}

#[test]
fn test_client_callbacks_from_guest_changes() {
    let mut g = TestGuest::new();
    let c = g.store.client();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let _w = c
        .watch("/local/domain/1/data", move |p| {
            s.lock().unwrap().push(p.to_owned())
        })
        .unwrap();
    g.write("data/x", "1").unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        ["/local/domain/1/data", "/local/domain/1/data/x"]
    );
}

#[test]
fn test_client_introduce_watch_fires() {
    let store = Store::new(Config::default()).unwrap();
    let c = store.client();
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    let _w = c
        .watch("@introduceDomain", move |p| {
            assert_eq!(p, "@introduceDomain");
            n2.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    store.introduce_domain(&DomainInfo::new(4, "x")).unwrap();
    assert_eq!(n.load(Ordering::SeqCst), 2);
}

// ---- Domains ----

#[test]
fn test_domain_tree_as_libxl() {
    let store = Store::new(Config::default()).unwrap();
    let mut info = DomainInfo::new(3, "vm3");
    info.uuid[15] = 1;
    info.vcpus = 2;
    info.online_vcpus = 1;
    info.max_memory_kib = 1 << 20;
    info.target_memory_kib = 1 << 19;
    info.store_gfn = 0xfeffc;
    info.store_port = 5;
    store.introduce_domain(&info).unwrap();
    let c = store.client();
    let r = |p: &str| c.read_string(&format!("/local/domain/3/{p}")).unwrap();
    assert_eq!(r("domid"), "3");
    assert_eq!(r("name"), "vm3");
    assert_eq!(r("vm"), "/vm/00000000-0000-0000-0000-000000000001");
    assert_eq!(
        c.read_string("/vm/00000000-0000-0000-0000-000000000001/name")
            .unwrap(),
        "vm3"
    );
    assert_eq!(r("memory/static-max"), "1048576");
    assert_eq!(r("memory/target"), "524288");
    assert_eq!(r("cpu/0/availability"), "online");
    assert_eq!(r("cpu/1/availability"), "offline");
    assert_eq!(r("store/port"), "5");
    assert_eq!(r("store/ring-ref"), "1044476");
    assert_eq!(r("platform/acpi"), "1");
    assert_eq!(r("control/platform-feature-xs_reset_watches"), "1");
    assert_eq!(r("control/platform-feature-multiprocessor-suspend"), "1");
    assert_eq!(c.read_string("/local/domain/0/name").unwrap(), "Domain-0");
    let ro = [Perm::none(0), Perm::read(3)];
    let rw = [Perm::none(3)];
    for p in ["", "/name", "/control", "/memory/target", "/store/port"] {
        assert_eq!(
            c.get_perms(&format!("/local/domain/3{p}")).unwrap(),
            ro,
            "{p}"
        );
    }
    for p in [
        "control/shutdown",
        "control/feature-poweroff",
        "control/sysrq",
        "data",
        "device",
        "drivers",
        "feature",
        "attr",
        "error",
        "device/suspend/event-channel",
    ] {
        assert_eq!(
            c.get_perms(&format!("/local/domain/3/{p}")).unwrap(),
            rw,
            "{p}"
        );
    }
    assert_eq!(
        store.introduce_domain(&info),
        Err(crate::Error::DomainExists(3))
    );
}

#[test]
fn test_release_domain_removes_tree_and_stops_ring() {
    let mut g = TestGuest::new();
    let c = g.store.client();
    c.write("/elsewhere", "").unwrap();
    c.set_perms("/elsewhere", &[Perm::none(1)]).unwrap();
    c.write("/shared", "").unwrap();
    c.set_perms("/shared", &[Perm::none(0), Perm::both(1)])
        .unwrap();
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    let _w = c
        .watch("@releaseDomain", move |_| {
            n2.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    g.store.release_domain(1).unwrap();
    assert_eq!(n.load(Ordering::SeqCst), 2);
    assert!(!c.exists("/local/domain/1"));
    assert!(!c.exists("/vm/00000000-0000-0000-0000-000000000001"));
    assert!(c.exists("/vm"));
    assert!(!c.exists("/elsewhere"));
    assert!(c.get_perms("/shared").unwrap()[1].ignored);
    assert!(!g.store.is_introduced(1));
    // The ring is left alone.
    g.push_bytes(&crate::wire::message(T::Read.raw(), 1, 0, &z("name")));
    g.conn.kick();
    assert!(g.pull().is_empty());
    assert_eq!(
        g.store.release_domain(1),
        Err(crate::Error::UnknownDomain(1))
    );
}

#[test]
fn test_connect_errors() {
    let store = store_with(Config::default(), 1);
    let mem = crate::testing::mem();
    let notify: Arc<dyn Fn() + Send + Sync> = Arc::new(|| {});
    assert_eq!(
        store
            .connect_guest(2, mem.clone(), 0x1000, notify.clone())
            .err(),
        Some(crate::Error::UnknownDomain(2))
    );
    assert_eq!(
        store
            .connect_guest(1, mem.clone(), 0x1010, notify.clone())
            .err(),
        Some(crate::Error::InvalidRing(0x1010))
    );
    assert_eq!(
        store
            .connect_guest(1, mem.clone(), 0x100000, notify.clone())
            .err(),
        Some(crate::Error::InvalidRing(0x100000))
    );
    let _c = store
        .connect_guest(1, mem.clone(), 0x1000, notify.clone())
        .unwrap();
    assert_eq!(
        store.connect_guest(1, mem, 0x2000, notify).err(),
        Some(crate::Error::AlreadyConnected(1))
    );
}

// ---- Snapshots ----

/// Saves, restores into a fresh store, and checks the state matches.
fn check_restore(store: &Arc<Store>) -> Arc<Store> {
    let s = store.state();
    let bytes = s.to_bytes();
    let back = State::from_bytes(&bytes).unwrap();
    assert_eq!(back, s);
    let restored = Store::from_state(&back).unwrap();
    assert_eq!(restored.state(), s);
    assert_eq!(restored.state().to_bytes(), bytes);
    restored
}

#[test]
fn test_snapshot_restored_store_answers_like_the_original() {
    let (mut g, _c) = setup();
    g.watch("some", "w").unwrap();
    g.write("some/a", "1").unwrap();
    let tx = g.tx_start().unwrap();
    g.write_tx(tx, "some/b", "2").unwrap();
    g.rm_tx(tx, "some/a").unwrap();
    g.take_events();
    // Leave a half-sent request in the ring.
    let req = crate::wire::message(T::Read.raw(), 99, tx, &z("some/b"));
    g.push_bytes(&req[..10]);
    g.conn.kick();
    let restored = check_restore(&g.store);
    let mem2 = crate::testing::mem();
    // Guest RAM travels: copy the ring page.
    let mut page = [0u8; 4096];
    vm_memory::Bytes::read_slice(
        &*g.mem,
        &mut page,
        vm_memory::GuestAddress(crate::testing::RING_GPA),
    )
    .unwrap();
    vm_memory::Bytes::write_slice(
        &*mem2,
        &page,
        vm_memory::GuestAddress(crate::testing::RING_GPA),
    )
    .unwrap();
    let conn2 = restored
        .resume_guest(1, mem2.clone(), Arc::new(|| {}))
        .unwrap();
    let mut g2 = TestGuest::from_parts(restored.clone(), mem2, conn2, 1);
    g.next_req_sync(1000);
    for guest in [&mut g, &mut g2] {
        guest.push_bytes(&req[10..]);
        guest.conn.kick();
        let got = guest.pull_sorted();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0.req_id, 99);
        assert_eq!(got[0].1, b"2");
    }
    for guest in [&mut g, &mut g2] {
        guest.tx_end(tx, true).unwrap();
        assert_eq!(events(guest), ["some/b|w", "some/a|w"]);
        assert_eq!(guest.read("some/a"), err("ENOENT"));
    }
    assert_eq!(g.store.state(), g2.store.state());
}

#[test]
fn test_snapshot_resume_refuses_twice_and_unknown() {
    let g = TestGuest::new();
    let restored = check_restore(&g.store);
    let mem = crate::testing::mem();
    let _c = restored
        .resume_guest(1, mem.clone(), Arc::new(|| {}))
        .unwrap();
    assert!(
        restored
            .resume_guest(1, mem.clone(), Arc::new(|| {}))
            .is_err()
    );
    assert!(restored.resume_guest(5, mem, Arc::new(|| {})).is_err());
}
