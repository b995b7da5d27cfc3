// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The XenStore and PV console rings driven by a guest under KVM, edge
//! cases included (the `pv_rings` guest): wrap-around, a request written
//! a few bytes at a time, values larger than the ring, a watch, a bad
//! producer index (the store flags it and stops answering) and a
//! reconnect, console output that wraps its ring; then a back-end write
//! the guest watches, from the host.

use xen_domain::testing::SharedBuffer;
use xen_domain::{ConsoleSetup, StoreSetup};
use xen_guest_harness::xen::domain_config;
use xen_guest_harness::{Runner, Xen, guests, kvm_available};

/// The pages the test gives the rings: RAM the guest image does not use.
const STORE_GFN: u64 = 0x1f00;
const CONSOLE_GFN: u64 = 0x1f01;

#[test]
fn test_guest_xenstore_and_console_rings_edge_cases() {
    if !kvm_available("test_guest_xenstore_and_console_rings_edge_cases") {
        return;
    }
    let out = SharedBuffer::default();
    let writer = out.clone();
    let xen = Xen::new(domain_config(1, 0x4000a, 32 << 20)).with_domain(move |b| {
        b.xenstore(StoreSetup {
            gfn: STORE_GFN,
            name: "pv-rings".into(),
        })
        .pv_console(ConsoleSetup {
            gfn: CONSOLE_GFN,
            writer: Box::new(writer),
        })
    });
    let (runner, handle) = Runner::new(guests::PV_RINGS).xen(xen);
    let o = runner.run().unwrap();
    println!("{}", o.console);
    o.assert_status(0);
    let v = o.values();
    // libxl's order: the store's port first, the console's second.
    assert_eq!(v["store"], format!("pfn {STORE_GFN} port 1"));
    assert_eq!(v["console"], format!("pfn {CONSOLE_GFN} port 2"));
    // C xenstored's features: reconnection and the error field at least.
    let features: u32 = v["server_features"].parse().unwrap();
    assert_eq!(features & 3, 3, "{features:#x}");
    assert_eq!(v["domid"], "1");
    for step in ["wrap_around", "partial_request", "big_value", "watch"] {
        assert_eq!(v[step], "ok", "{step}");
    }
    assert!(
        ["E2BIG", "ENOSPC"].contains(&v["oversize_value"]),
        "{}",
        v["oversize_value"]
    );
    assert_eq!(v["read_missing"], "ENOENT");
    assert_eq!(v["write_readonly"], "EACCES");
    // XENSTORE_ERROR_RINGIDX, and no reply to the garbage.
    assert_eq!(v["bad_index"], "error 2 answered false");
    assert_eq!(v["reconnect"], "connection 0 error 0 req_pending 0");
    assert_eq!(v["after_reconnect"], "ok");

    // Every console byte arrived, in order, across the ring's wrap.
    let text = out.contents();
    let want: Vec<u8> = (0..3000)
        .map(|i| b'A' + (i % 26) as u8)
        .chain(*b"\nconsole done\n")
        .collect();
    assert_eq!(text, want);

    // The host's view: the guest's node, and the grant refs the toolstack
    // filled.
    let kvm = handle.kvm().unwrap();
    let domain = kvm.domain();
    let client = domain.store_client().unwrap();
    assert_eq!(
        client.read("/local/domain/1/data/watched/child").unwrap(),
        b"x"
    );
    assert_eq!(
        client.read("/local/domain/1/console/ring-ref").unwrap(),
        CONSOLE_GFN.to_string().as_bytes()
    );
    assert_eq!(domain.pv_console().unwrap().counters().bytes_out, 3014);
}
