// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! In-process cost of a XenStore request round trip through the ring
//! page: a test "guest" writes a READ or WRITE request into a
//! `GuestMemoryMmap` page, kicks, and reads the reply back. Each is
//! compared, in the same group, with a bare `HashMap` get or insert and a
//! memcpy of the bytes the round trip moves.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use xen_abi::io::xs_wire::XenstoreDomainInterface as Intf;
use xen_store::{Config, DomainInfo, GuestConnection, Store};

const RING: u64 = 0x1000;

type Mem = Arc<GuestMemoryMmap<()>>;

struct Guest {
    mem: Mem,
    conn: GuestConnection<Mem>,
    req: Vec<u8>,
    reply: Vec<u8>,
}

impl Guest {
    fn ld(&self, off: usize) -> u32 {
        self.mem.read_obj(GuestAddress(RING + off as u64)).unwrap()
    }

    fn st(&self, off: usize, v: u32) {
        self.mem
            .write_obj(v, GuestAddress(RING + off as u64))
            .unwrap()
    }

    /// Sets `self.req` to a request message.
    fn set_request(&mut self, type_: u32, payload: &[u8]) {
        self.req.clear();
        for w in [type_, 1, 0, payload.len() as u32] {
            self.req.extend_from_slice(&w.to_le_bytes());
        }
        self.req.extend_from_slice(payload);
    }

    /// Writes the request, kicks, reads the whole reply; returns its
    /// payload length.
    fn round_trip(&mut self) -> usize {
        let prod = self.ld(Intf::REQ_PROD_OFFSET);
        let start = (prod & 1023) as usize;
        let first = self.req.len().min(1024 - start);
        self.mem
            .write_slice(&self.req[..first], GuestAddress(RING + start as u64))
            .unwrap();
        if first < self.req.len() {
            self.mem
                .write_slice(&self.req[first..], GuestAddress(RING))
                .unwrap();
        }
        self.st(
            Intf::REQ_PROD_OFFSET,
            prod.wrapping_add(self.req.len() as u32),
        );
        self.conn.kick();
        let cons = self.ld(Intf::RSP_CONS_OFFSET);
        let prod = self.ld(Intf::RSP_PROD_OFFSET);
        let n = prod.wrapping_sub(cons) as usize;
        self.reply.resize(n, 0);
        let start = (cons & 1023) as usize;
        let first = n.min(1024 - start);
        self.mem
            .read_slice(
                &mut self.reply[..first],
                GuestAddress(RING + 1024 + start as u64),
            )
            .unwrap();
        if first < n {
            self.mem
                .read_slice(&mut self.reply[first..], GuestAddress(RING + 1024))
                .unwrap();
        }
        self.st(Intf::RSP_CONS_OFFSET, prod);
        assert!(n >= 16, "no reply");
        n - 16
    }
}

fn setup() -> Guest {
    let store = Store::new(Config::default()).unwrap();
    store
        .introduce_domain(&DomainInfo::new(1, "bench"))
        .unwrap();
    let mem: Mem = Arc::new(GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap());
    let conn = store
        .connect_guest(1, mem.clone(), RING, Arc::new(|| {}))
        .unwrap();
    store
        .client()
        .write("/local/domain/1/data/key", "value")
        .unwrap();
    Guest {
        mem,
        conn,
        req: Vec::new(),
        reply: Vec::new(),
    }
}

/// A memcpy of the same bytes the round trip moves (request and reply,
/// headers included), into a buffer and back.
fn memcpy(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    g: &mut Guest,
) {
    let reply_len = g.round_trip() + 16;
    let src: Vec<u8> = g
        .req
        .iter()
        .copied()
        .chain(std::iter::repeat_n(7, reply_len))
        .collect();
    let mut dst = vec![0u8; src.len()];
    group.bench_function("memcpy of the same bytes", |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(&src));
            black_box(&dst);
        })
    });
}

fn round_trips(c: &mut Criterion) {
    let mut g = setup();
    let mut map: HashMap<String, Vec<u8>> = HashMap::new();
    map.insert("/local/domain/1/data/key".into(), b"value".to_vec());

    let mut group = c.benchmark_group("xenstore READ");
    g.set_request(2, b"data/key\0");
    group.bench_function("READ round trip through the ring", |b| {
        b.iter(|| black_box(g.round_trip()))
    });
    group.bench_function("bare HashMap get", |b| {
        b.iter(|| black_box(map.get(black_box("/local/domain/1/data/key")).map(Vec::len)))
    });
    memcpy(&mut group, &mut g);
    group.finish();

    let mut group = c.benchmark_group("xenstore WRITE");
    g.set_request(11, b"data/key\0value2");
    group.bench_function("WRITE round trip through the ring", |b| {
        b.iter(|| black_box(g.round_trip()))
    });
    group.bench_function("bare HashMap insert", |b| {
        b.iter(|| {
            black_box(map.insert(
                black_box("/local/domain/1/data/key").to_owned(),
                b"value2".to_vec(),
            ))
        })
    });
    memcpy(&mut group, &mut g);
    group.finish();
}

criterion_group!(benches, round_trips);
criterion_main!(benches);
