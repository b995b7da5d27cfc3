// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! In-process cost of a back end mapping and unmapping the 11 segments of
//! a full blkif request, against what it is made of at least (a hash-map
//! insert and remove per segment, QEMU's bookkeeping) and what a request
//! then does with the data (copying 11 pages).

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use xen_abi::grant_table::{GrantEntryV1, GrantFlags, GrantType};
use xen_gnttab::testing::TestFrames;
use xen_gnttab::{Config, GrantFrame, GrantTable};

/// Segments of a blkif request (`BLKIF_MAX_SEGMENTS_PER_REQUEST`).
const SEGMENTS: u32 = 11;

fn map(c: &mut Criterion) {
    let mem: GuestMemoryMmap = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
    let frames = Arc::new(TestFrames::new(64));
    let table = GrantTable::new(Config::new(1), frames.clone()).unwrap();
    frames.set_init(table.frame_init());
    assert!(frames.place(&mem, GrantFrame::Shared(0), 0x20));
    let refs: Vec<u32> = (8..8 + SEGMENTS).collect();
    for &r in &refs {
        let mut e = GrantEntryV1 {
            domid: 0,
            frame: 0x40 + r,
            ..Default::default()
        };
        e.set_grant(GrantType::PermitAccess, GrantFlags::empty());
        mem.write_obj(e, GuestAddress(0x20 * 4096 + u64::from(r) * 8))
            .unwrap();
    }

    let mut g = c.benchmark_group("grant map of 11 segments");
    g.bench_function("gnttab map+unmap (write)", |b| {
        b.iter(|| {
            let m = table.map(&mem, 0, black_box(&refs), true).unwrap();
            table.unmap(&mem, m).unwrap();
        })
    });
    g.bench_function("gnttab map+unmap (read)", |b| {
        b.iter(|| {
            let m = table.map(&mem, 0, black_box(&refs), false).unwrap();
            table.unmap(&mem, m).unwrap();
        })
    });
    let mut hm: HashMap<u32, u64> = HashMap::new();
    g.bench_function("HashMap insert+remove x11", |b| {
        b.iter(|| {
            for &r in black_box(&refs) {
                hm.insert(r, u64::from(r) << 12);
            }
            for &r in &refs {
                black_box(hm.remove(&r));
            }
        })
    });
    let src = vec![0x5au8; SEGMENTS as usize * 4096];
    let mut dst = vec![0u8; SEGMENTS as usize * 4096];
    g.bench_function("memcpy 11 x 4 KiB", |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(&src));
            black_box(&mut dst);
        })
    });
    g.finish();
}

criterion_group!(benches, map);
criterion_main!(benches);
