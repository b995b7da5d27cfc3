// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Property test: random guest (through the ring) and domain-0 (client)
//! operations, with guest transactions, against a plain model of the
//! tree: a `BTreeMap` of paths to (value, permissions, children, version),
//! with Xen's rules written out directly (first-match ACLs, error hiding
//! behind unreadable parents, creator ownership, the node quota,
//! generation-based conflicts on every node a transaction looked at).

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use xen_abi::errno::XenErrno;

use crate::testing::TestGuest;
use crate::{Access, Config, Perm};

const GUEST: u32 = 1;
const NODE_QUOTA: u32 = 18;
const READ: u8 = 1;
const WRITE: u8 = 2;
const OWNER: u8 = 4;

#[derive(Clone, Debug, PartialEq)]
struct MNode {
    value: Vec<u8>,
    perms: Vec<(Access, u32)>,
    children: Vec<String>,
    ver: u64,
}

#[derive(Default, Debug)]
struct MTx {
    seen: BTreeMap<String, Option<u64>>,
    local: BTreeMap<String, Option<MNode>>,
    modified: BTreeSet<String>,
    delta: i64,
    created: bool,
}

#[derive(Debug)]
struct Model {
    nodes: BTreeMap<String, MNode>,
    ver: u64,
    tx: Option<(u32, MTx)>,
}

fn parent(p: &str) -> String {
    match p[1..].rfind('/') {
        Some(i) => p[..=i].to_owned(),
        None => "/".to_owned(),
    }
}

fn base(p: &str) -> String {
    p.rsplit('/').next().unwrap().to_owned()
}

fn bits(a: Access) -> u8 {
    match a {
        Access::None => 0,
        Access::Read => READ,
        Access::Write => WRITE,
        Access::Both => READ | WRITE,
    }
}

fn perm(privileged: bool, perms: &[(Access, u32)]) -> u8 {
    if privileged || perms[0].1 == GUEST {
        return READ | WRITE | OWNER;
    }
    for &(a, d) in &perms[1..] {
        if d == GUEST {
            return bits(a);
        }
    }
    bits(perms[0].0)
}

/// One operation's view: live, or through the guest's transaction.
struct View<'a> {
    m: &'a mut Model,
    in_tx: bool,
    privileged: bool,
}

impl View<'_> {
    fn get(&mut self, p: &str) -> Option<MNode> {
        if self.in_tx {
            let (_, tx) = self.m.tx.as_mut().unwrap();
            if !tx.seen.contains_key(p) {
                let live = self.m.nodes.get(p);
                tx.seen.insert(p.to_owned(), live.map(|n| n.ver));
                tx.local.insert(p.to_owned(), live.cloned());
            }
            return tx.local[p].clone();
        }
        self.m.nodes.get(p).cloned()
    }

    fn put(&mut self, p: &str, n: Option<MNode>) {
        self.m.ver += 1;
        let n = n.map(|mut n| {
            n.ver = self.m.ver;
            n
        });
        if self.in_tx {
            let (_, tx) = self.m.tx.as_mut().unwrap();
            tx.local.insert(p.to_owned(), n);
            tx.modified.insert(p.to_owned());
        } else {
            match n {
                Some(n) => self.m.nodes.insert(p.to_owned(), n),
                None => self.m.nodes.remove(p),
            };
        }
    }

    fn count_guest(&self) -> i64 {
        let live = self
            .m
            .nodes
            .values()
            .filter(|n| n.perms[0].1 == GUEST)
            .count() as i64;
        live + self
            .m
            .tx
            .as_ref()
            .filter(|_| self.in_tx)
            .map_or(0, |(_, t)| t.delta)
    }

    fn count_add(&mut self, owner: u32, d: i64) {
        if self.in_tx && owner == GUEST {
            self.m.tx.as_mut().unwrap().1.delta += d;
        }
    }

    fn check(&mut self, name: &str, want: u8) -> Result<MNode, XenErrno> {
        let e = match self.get(name) {
            Some(n) if perm(self.privileged, &n.perms) & want == want => return Ok(n),
            Some(_) => XenErrno::EACCES,
            None => XenErrno::ENOENT,
        };
        let mut p = name.to_owned();
        loop {
            p = parent(&p);
            if let Some(n) = self.get(&p) {
                return Err(if perm(self.privileged, &n.perms) & want != 0 {
                    e
                } else {
                    XenErrno::EACCES
                });
            }
        }
    }

    fn create(&mut self, name: &str, value: &[u8]) -> Result<(), XenErrno> {
        let mut missing = vec![name.to_owned()];
        let mut p = parent(name);
        let mut pnode = loop {
            if let Some(n) = self.get(&p) {
                break n;
            }
            missing.push(p.clone());
            p = parent(&p);
        };
        let mut perms = pnode.perms.clone();
        if !self.privileged {
            perms[0].1 = GUEST;
        }
        if !self.privileged && self.count_guest() + missing.len() as i64 > i64::from(NODE_QUOTA) {
            return Err(XenErrno::ENOSPC);
        }
        for (i, path) in missing.iter().enumerate() {
            let children = if i == 0 {
                Vec::new()
            } else {
                vec![base(&missing[i - 1])]
            };
            let v = if i == 0 { value.to_vec() } else { vec![] };
            self.put(
                path,
                Some(MNode {
                    value: v,
                    perms: perms.clone(),
                    children,
                    ver: 0,
                }),
            );
            self.count_add(perms[0].1, 1);
        }
        pnode.children.push(base(missing.last().unwrap()));
        self.put(&p, Some(pnode));
        if self.in_tx {
            self.m.tx.as_mut().unwrap().1.created = true;
        }
        Ok(())
    }

    fn write(&mut self, name: &str, value: &[u8]) -> Result<(), XenErrno> {
        match self.check(name, WRITE) {
            Ok(mut n) => {
                n.value = value.to_vec();
                self.put(name, Some(n));
                Ok(())
            }
            Err(XenErrno::ENOENT) => self.create(name, value),
            Err(e) => Err(e),
        }
    }

    fn mkdir(&mut self, name: &str) -> Result<(), XenErrno> {
        match self.check(name, WRITE) {
            Ok(_) => Ok(()),
            Err(XenErrno::ENOENT) => self.create(name, b""),
            Err(e) => Err(e),
        }
    }

    fn rm(&mut self, name: &str) -> Result<(), XenErrno> {
        match self.check(name, WRITE) {
            Ok(_) => {}
            Err(XenErrno::ENOENT) => {
                return match self.get(&parent(name)) {
                    Some(_) => Ok(()),
                    None => Err(XenErrno::ENOENT),
                };
            }
            Err(e) => return Err(e),
        }
        // A transaction may see the node but not its parent (C: EINVAL).
        let Some(mut pnode) = self.get(&parent(name)) else {
            return Err(XenErrno::EINVAL);
        };
        self.rm_walk(name)?;
        pnode.children.retain(|c| *c != base(name));
        self.put(&parent(name), Some(pnode));
        Ok(())
    }

    /// Removes `p` after its children, in order; a listed child that is
    /// missing (a transaction's stale view) stops with EIO, keeping the
    /// removals so far.
    fn rm_walk(&mut self, p: &str) -> Result<(), XenErrno> {
        let mut n = self.get(p).unwrap();
        let mut changed = false;
        for c in n.children.clone() {
            let cp = format!("{p}/{c}");
            let r = match self.get(&cp) {
                Some(_) => self.rm_walk(&cp),
                None => Err(XenErrno::EIO),
            };
            if let Err(e) = r {
                if changed {
                    self.put(p, Some(n));
                }
                return Err(e);
            }
            n.children.retain(|x| *x != c);
            changed = true;
        }
        self.count_add(n.perms[0].1, -1);
        self.put(p, None);
        Ok(())
    }

    fn set_perms(&mut self, name: &str, perms: Vec<(Access, u32)>) -> Result<(), XenErrno> {
        let mut n = self.check(name, WRITE | OWNER)?;
        if !self.privileged && perms[0].1 != n.perms[0].1 {
            return Err(XenErrno::EPERM);
        }
        self.count_add(n.perms[0].1, -1);
        self.count_add(perms[0].1, 1);
        n.perms = perms;
        self.put(name, Some(n));
        Ok(())
    }

    fn read(&mut self, name: &str) -> Result<Vec<u8>, XenErrno> {
        Ok(self.check(name, READ)?.value)
    }

    fn dir(&mut self, name: &str) -> Result<Vec<String>, XenErrno> {
        Ok(self.check(name, READ)?.children)
    }
}

impl Model {
    fn view(&mut self, in_tx: bool, privileged: bool) -> View<'_> {
        View {
            m: self,
            in_tx,
            privileged,
        }
    }

    fn commit(&mut self) -> Result<(), XenErrno> {
        let (_, tx) = self.tx.take().unwrap();
        let live = self
            .nodes
            .values()
            .filter(|n| n.perms[0].1 == GUEST)
            .count() as i64;
        if tx.created && tx.delta > 0 && live + tx.delta > i64::from(NODE_QUOTA) {
            return Err(XenErrno::ENOSPC);
        }
        for (p, v) in &tx.seen {
            if self.nodes.get(p).map(|n| n.ver) != *v {
                return Err(XenErrno::EAGAIN);
            }
        }
        for p in &tx.modified {
            self.ver += 1;
            match tx.local[p].clone() {
                Some(mut n) => {
                    n.ver = self.ver;
                    self.nodes.insert(p.clone(), n);
                }
                None => {
                    self.nodes.remove(p);
                }
            }
        }
        Ok(())
    }
}

const PATHS: &[&str] = &[
    "/local/domain/1/data",
    "/local/domain/1/data/a",
    "/local/domain/1/data/b",
    "/local/domain/1/data/a/a",
    "/local/domain/1/data/a/b",
    "/local/domain/1/data/b/a",
    "/local/domain/1/ro",
    "/local/domain/1/ro/a",
    "/local/domain/1/ro/a/b",
    "/local/domain/1/ro/b",
    "/x",
    "/x/a",
    "/x/a/b",
    "/local/domain/1/name",
];

const PERMS: &[&[(Access, u32)]] = &[
    &[(Access::None, 1)],
    &[(Access::None, 1), (Access::Read, 0)],
    &[(Access::None, 0), (Access::Read, 1)],
    &[(Access::None, 0), (Access::Both, 1)],
    &[(Access::None, 0)],
    &[(Access::Both, 0)],
    &[(Access::None, 0), (Access::Read, 1), (Access::Both, 1)],
    &[(Access::Write, 0), (Access::None, 1)],
];

#[derive(Clone, Debug)]
enum MOp {
    Write(bool, usize, u8),
    Mkdir(bool, usize),
    Rm(bool, usize),
    Read(bool, usize),
    Dir(bool, usize),
    SetPerms(bool, usize, usize),
    TxStart,
    TxWrite(usize, u8),
    TxRm(usize),
    TxRead(usize),
    TxMkdir(usize),
    TxEnd(bool),
}

fn op_strategy() -> impl Strategy<Value = MOp> {
    let p = 0..PATHS.len();
    prop_oneof![
        4 => (any::<bool>(), p.clone(), 0u8..4).prop_map(|(g, p, v)| MOp::Write(g, p, v)),
        1 => (any::<bool>(), p.clone()).prop_map(|(g, p)| MOp::Mkdir(g, p)),
        2 => (any::<bool>(), p.clone()).prop_map(|(g, p)| MOp::Rm(g, p)),
        2 => (any::<bool>(), p.clone()).prop_map(|(g, p)| MOp::Read(g, p)),
        1 => (any::<bool>(), p.clone()).prop_map(|(g, p)| MOp::Dir(g, p)),
        2 => (any::<bool>(), p.clone(), 0..PERMS.len()).prop_map(|(g, p, q)| MOp::SetPerms(g, p, q)),
        2 => Just(MOp::TxStart),
        3 => (p.clone(), 0u8..4).prop_map(|(p, v)| MOp::TxWrite(p, v)),
        1 => p.clone().prop_map(MOp::TxRm),
        2 => p.clone().prop_map(MOp::TxRead),
        1 => p.prop_map(MOp::TxMkdir),
        2 => any::<bool>().prop_map(MOp::TxEnd),
    ]
}

fn errno_name(e: XenErrno) -> String {
    e.name().to_owned()
}

fn to_perms(p: &[(Access, u32)]) -> Vec<Perm> {
    p.iter()
        .map(|&(access, domid)| Perm {
            access,
            domid,
            ignored: false,
        })
        .collect()
}

fn wire_perms(p: &[(Access, u32)]) -> Vec<String> {
    to_perms(p).iter().map(|x| x.to_string()).collect()
}

/// Path to (value, permissions, children).
type Tree = BTreeMap<String, (Vec<u8>, Vec<(Access, u32)>, Vec<String>)>;

fn run(ops: Vec<MOp>) {
    let mut cfg = Config::default();
    cfg.quota.nodes = NODE_QUOTA;
    let mut g = TestGuest::with_config(cfg);
    let c = g.store.client();
    c.write("/local/domain/1/ro", "").unwrap();
    c.set_perms("/local/domain/1/ro", &[Perm::none(0), Perm::read(1)])
        .unwrap();
    c.write("/x", "").unwrap();
    let mut m = Model {
        nodes: g
            .store
            .state()
            .nodes
            .into_iter()
            .filter(|n| n.path.starts_with('/'))
            .map(|n| {
                let node = MNode {
                    value: n.value,
                    perms: n.perms.iter().map(|p| (p.access, p.domid)).collect(),
                    children: n.children,
                    ver: 0,
                };
                (n.path, node)
            })
            .collect(),
        ver: 0,
        tx: None,
    };
    for op in ops {
        let tx_id = m.tx.as_ref().map(|t| t.0);
        let (real, model): (Result<String, String>, Result<String, String>) = match op.clone() {
            MOp::Write(guest, p, v) => {
                let val = v.to_string();
                let real = if guest {
                    g.write(PATHS[p], &val)
                } else {
                    c.write(PATHS[p], &val).map_err(errno_name)
                };
                let model = m.view(false, !guest).write(PATHS[p], val.as_bytes());
                (
                    real.map(|_| String::new()),
                    model.map(|_| String::new()).map_err(errno_name),
                )
            }
            MOp::Mkdir(guest, p) => {
                let real = if guest {
                    g.mkdir(PATHS[p])
                } else {
                    c.mkdir(PATHS[p]).map_err(errno_name)
                };
                let model = m.view(false, !guest).mkdir(PATHS[p]);
                (
                    real.map(|_| String::new()),
                    model.map(|_| String::new()).map_err(errno_name),
                )
            }
            MOp::Rm(guest, p) => {
                let real = if guest {
                    g.rm(PATHS[p])
                } else {
                    c.rm(PATHS[p]).map_err(errno_name)
                };
                let model = m.view(false, !guest).rm(PATHS[p]);
                (
                    real.map(|_| String::new()),
                    model.map(|_| String::new()).map_err(errno_name),
                )
            }
            MOp::Read(guest, p) => {
                let real = if guest {
                    g.read(PATHS[p])
                } else {
                    c.read(PATHS[p]).map_err(errno_name)
                };
                let model = m.view(false, !guest).read(PATHS[p]);
                (
                    real.map(|v| String::from_utf8(v).unwrap()),
                    model
                        .map(|v| String::from_utf8(v).unwrap())
                        .map_err(errno_name),
                )
            }
            MOp::Dir(guest, p) => {
                let real = if guest {
                    g.dir(PATHS[p])
                } else {
                    c.directory(PATHS[p]).map_err(errno_name)
                };
                let model = m.view(false, !guest).dir(PATHS[p]);
                (
                    real.map(|v| v.join(",")),
                    model.map(|v| v.join(",")).map_err(errno_name),
                )
            }
            MOp::SetPerms(guest, p, q) => {
                let perms = PERMS[q];
                let real = if guest {
                    let strs = wire_perms(perms);
                    let refs: Vec<&str> = strs.iter().map(|s| s.as_str()).collect();
                    g.set_perms(PATHS[p], &refs)
                } else {
                    c.set_perms(PATHS[p], &to_perms(perms)).map_err(errno_name)
                };
                let model = m.view(false, !guest).set_perms(PATHS[p], perms.to_vec());
                (
                    real.map(|_| String::new()),
                    model.map(|_| String::new()).map_err(errno_name),
                )
            }
            MOp::TxStart => {
                if tx_id.is_some() {
                    continue;
                }
                let id = g.tx_start().unwrap();
                m.tx = Some((id, MTx::default()));
                continue;
            }
            MOp::TxWrite(p, v) => {
                let Some(tx) = tx_id else { continue };
                let val = v.to_string();
                let real = g.write_tx(tx, PATHS[p], &val);
                let model = m.view(true, false).write(PATHS[p], val.as_bytes());
                (
                    real.map(|_| String::new()),
                    model.map(|_| String::new()).map_err(errno_name),
                )
            }
            MOp::TxRm(p) => {
                let Some(tx) = tx_id else { continue };
                let real = g.rm_tx(tx, PATHS[p]);
                let model = m.view(true, false).rm(PATHS[p]);
                (
                    real.map(|_| String::new()),
                    model.map(|_| String::new()).map_err(errno_name),
                )
            }
            MOp::TxMkdir(p) => {
                let Some(tx) = tx_id else { continue };
                let real = g.call(
                    xen_abi::io::xs_wire::XsdSockmsgType::Mkdir,
                    tx,
                    &crate::testing::z(PATHS[p]),
                );
                let model = m.view(true, false).mkdir(PATHS[p]);
                (
                    real.map(|_| String::new()),
                    model.map(|_| String::new()).map_err(errno_name),
                )
            }
            MOp::TxRead(p) => {
                let Some(tx) = tx_id else { continue };
                let real = g.read_tx(tx, PATHS[p]);
                let model = m.view(true, false).read(PATHS[p]);
                (
                    real.map(|v| String::from_utf8(v).unwrap()),
                    model
                        .map(|v| String::from_utf8(v).unwrap())
                        .map_err(errno_name),
                )
            }
            MOp::TxEnd(commit) => {
                let Some(tx) = tx_id else { continue };
                let real = g.tx_end(tx, commit);
                let model = if commit {
                    m.commit()
                } else {
                    m.tx = None;
                    Ok(())
                };
                (
                    real.map(|_| String::new()),
                    model.map(|_| String::new()).map_err(errno_name),
                )
            }
        };
        assert_eq!(real, model, "{op:?}");
    }
    // The whole tree matches.
    let state = g.store.state();
    let real: Tree = state
        .nodes
        .into_iter()
        .filter(|n| n.path.starts_with('/'))
        .map(|n| {
            let perms = n.perms.iter().map(|p| (p.access, p.domid)).collect();
            (n.path, (n.value, perms, n.children))
        })
        .collect();
    let model: Tree = m
        .nodes
        .into_iter()
        .map(|(p, n)| (p, (n.value, n.perms, n.children)))
        .collect();
    assert_eq!(real, model);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn test_model_store_matches_plain_model(ops in proptest::collection::vec(op_strategy(), 1..60)) {
        run(ops);
    }
}
