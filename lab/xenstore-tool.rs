// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `xenstore-tool`: the lab's L2 /init talks to XenStore with it. Linux's
//! `/dev/xen/xenbus` (xenbus_dev_frontend, built into the Debian kernel)
//! passes xs_wire messages between each open file and XenStore: a 16-byte
//! header (type, req_id, tx_id, payload length: native-endian u32s), then
//! the payload, NUL-separated strings. Replies keep the request's req_id;
//! watch events (req_id 0) may come in between.
//!
//! ```text
//! read PATH | write PATH VALUE | ls PATH | rm PATH | domain-path
//! watch PATH [SECS]         prints the first event after the initial one
//! await-shutdown [SECS]     waits for a non-empty control/shutdown, writes
//!                           "" back (in a transaction, as Linux's manage.c
//!                           does) and prints the command
//! selftest [--qemu]         the lab's XenStore checks, an ok/FAIL line each;
//!                           --qemu tolerates a missing GET_DOMAIN_PATH
//! ```
//!
//! Relative paths are relative to the domain's /local/domain/DOMID. Exit
//! status: 0 done, 1 failure or timeout (SECS, default 60), 2 usage. Built
//! static by lab/run; std only. Tests: `rustc --test lab/xenstore-tool.rs`.

use std::collections::VecDeque;
use std::convert::TryInto;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::process::exit;
use std::time::{Duration, Instant};

const DIRECTORY: u32 = 1;
const READ: u32 = 2;
const WATCH: u32 = 4;
const UNWATCH: u32 = 5;
const TRANSACTION_START: u32 = 6;
const TRANSACTION_END: u32 = 7;
const GET_DOMAIN_PATH: u32 = 10;
const WRITE: u32 = 11;
const RM: u32 = 13;
const WATCH_EVENT: u32 = 15;
const ERROR: u32 = 16;

const DEV: &str = "/dev/xen/xenbus";
/// How long a request waits for its reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a watch waits for the event it fires when it is set.
const INITIAL_EVENT: Duration = Duration::from_secs(5);
const USAGE: &str = "usage: xenstore-tool read PATH | write PATH VALUE | ls PATH | rm PATH | \
    domain-path | watch PATH [SECS] | await-shutdown [SECS] | selftest [--qemu]";

/// Errors are XenStore's names (`EACCES`, `ENOENT`), `timeout`, or text.
type Result<T> = std::result::Result<T, String>;

/// One xs_wire message.
#[derive(Debug, PartialEq)]
struct Msg {
    ty: u32,
    req_id: u32,
    tx_id: u32,
    body: Vec<u8>,
}

/// A message's bytes: the header, then the payload.
fn encode(ty: u32, req_id: u32, tx_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(16 + payload.len());
    for word in [ty, req_id, tx_id, payload.len() as u32] {
        v.extend_from_slice(&word.to_ne_bytes());
    }
    v.extend_from_slice(payload);
    v
}

/// The first whole message in `buf` and how many bytes it took.
fn decode(buf: &[u8]) -> Option<(Msg, usize)> {
    let word = |i: usize| u32::from_ne_bytes(buf[i * 4..i * 4 + 4].try_into().unwrap());
    if buf.len() < 16 || buf.len() < 16 + word(3) as usize {
        return None;
    }
    let end = 16 + word(3) as usize;
    let body = buf[16..end].to_vec();
    Some((Msg { ty: word(0), req_id: word(1), tx_id: word(2), body }, end))
}

/// NUL-terminated strings back to back: `path\0token\0`.
fn strings(parts: &[&str]) -> Vec<u8> {
    parts.iter().flat_map(|p| p.bytes().chain([0])).collect()
}

/// The strings of a NUL-separated body (a directory listing, an event).
fn split(body: &[u8]) -> Vec<String> {
    let parts = body.split(|&b| b == 0).filter(|s| !s.is_empty());
    parts.map(|s| String::from_utf8_lossy(s).into_owned()).collect()
}

/// A value or an error name, without a trailing NUL.
fn text(body: &[u8]) -> String {
    String::from_utf8_lossy(body.strip_suffix(&[0]).unwrap_or(body)).into_owned()
}

#[repr(C)]
struct PollFd {
    fd: i32,
    events: i16,
    revents: i16,
}

extern "C" {
    fn poll(fds: *mut PollFd, nfds: u64, timeout_ms: i32) -> i32;
}

/// Whether `f` becomes readable within `timeout`.
fn readable(f: &File, timeout: Duration) -> bool {
    let mut p = PollFd { fd: f.as_raw_fd(), events: 1 /* POLLIN */, revents: 0 };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one pollfd that lives across the call.
    unsafe { poll(&mut p, 1, ms) > 0 }
}

/// One open of /dev/xen/xenbus: its own requests, transactions and watches.
struct Xs {
    dev: File,
    buf: Vec<u8>,
    /// Paths of watch events that came while waiting for a reply.
    events: VecDeque<String>,
    req_id: u32,
}

impl Xs {
    fn open() -> Result<Xs> {
        let dev = OpenOptions::new().read(true).write(true).open(DEV);
        Ok(Xs::with(dev.map_err(|e| format!("{DEV}: {e}"))?))
    }

    fn with(dev: File) -> Xs {
        Xs { dev, buf: Vec::new(), events: VecDeque::new(), req_id: 0 }
    }

    /// The next message, or `timeout` once `deadline` has passed.
    fn recv(&mut self, deadline: Instant) -> Result<Msg> {
        loop {
            if let Some((m, n)) = decode(&self.buf) {
                self.buf.drain(..n);
                return Ok(m);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if !readable(&self.dev, left) {
                if left.is_zero() {
                    return Err("timeout".into());
                }
                continue; // EINTR
            }
            let mut chunk = [0; 4096];
            match self.dev.read(&mut chunk) {
                Ok(0) => return Err(format!("{DEV}: end of file")),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(format!("{DEV}: {e}")),
            }
        }
    }

    /// Sends a request and waits for its reply: the body as text (NULs
    /// kept but the last), or the error's name.
    fn request(&mut self, ty: u32, tx: u32, payload: &[u8]) -> Result<String> {
        self.req_id += 1;
        let id = self.req_id;
        let msg = encode(ty, id, tx, payload);
        self.dev.write_all(&msg).map_err(|e| format!("{DEV}: {e}"))?;
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            let m = self.recv(deadline)?;
            match m.ty {
                WATCH_EVENT => self.events.extend(split(&m.body).into_iter().take(1)),
                _ if m.req_id != id => {} // a late reply to an abandoned request
                ERROR => return Err(text(&m.body)),
                _ => return Ok(text(&m.body)),
            }
        }
    }

    /// A request whose payload is one string: `arg\0` (a path, a domid,
    /// "" or "T"/"F"; "path\0token" for a watch).
    fn ask(&mut self, ty: u32, tx: u32, arg: &str) -> Result<String> {
        self.request(ty, tx, &strings(&[arg]))
    }

    fn read(&mut self, tx: u32, path: &str) -> Result<String> {
        self.ask(READ, tx, path)
    }

    /// WRITE is `path\0value`: the value has no NUL of its own.
    fn write(&mut self, tx: u32, path: &str, value: &str) -> Result<()> {
        let payload = [strings(&[path]), value.as_bytes().to_vec()].concat();
        self.request(WRITE, tx, &payload).map(drop)
    }

    fn start(&mut self) -> Result<u32> {
        let id = self.ask(TRANSACTION_START, 0, "")?;
        id.parse().map_err(|_| format!("transaction id {id:?}"))
    }

    fn end(&mut self, tx: u32, commit: bool) -> Result<()> {
        self.ask(TRANSACTION_END, tx, if commit { "T" } else { "F" }).map(drop)
    }

    /// The path of the next watch event, waiting up to `timeout`.
    fn event(&mut self, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(path) = self.events.pop_front() {
                return Ok(path);
            }
            let m = self.recv(deadline)?;
            if m.ty == WATCH_EVENT {
                self.events.extend(split(&m.body).into_iter().take(1));
            }
        }
    }
}

/// A value as `"value"`, an error as `error NAME`.
fn show<T: std::fmt::Debug>(r: &Result<T>) -> String {
    r.as_ref().map_or_else(|e| format!("error {e}"), |v| format!("{v:?}"))
}

fn is_error<T>(r: &Result<T>, name: &str) -> bool {
    matches!(r, Err(e) if e == name)
}

/// Adds one to data/tx in a transaction (again on EAGAIN): the new value,
/// and whether another connection still saw the old one before the commit.
fn transaction(xs: &mut Xs, other: &mut Xs) -> Result<(String, bool)> {
    for _ in 0..5 {
        let tx = xs.start()?;
        let before = xs.read(tx, "data/tx");
        let new = (before.as_deref().map_or(0, |v| v.parse().unwrap_or(0)) + 1).to_string();
        if let Err(e) = xs.write(tx, "data/tx", &new) {
            let _ = xs.end(tx, false);
            return Err(e);
        }
        let isolated = other.read(0, "data/tx") == before;
        match xs.end(tx, true) {
            Err(e) if e == "EAGAIN" => continue,
            r => return r.map(|()| (new, isolated)),
        }
    }
    Err("EAGAIN five times".into())
}

/// The lab's XenStore checks, on two connections, each printing an
/// `ok   XenStore ...` or `FAIL XenStore ...` line; true when all passed.
fn selftest(xs: &mut Xs, other: &mut Xs, qemu: bool) -> bool {
    let mut failed = false;
    let mut check = |ok: bool, what: &str, r: String| {
        println!("{} XenStore {what}: {r}", if ok { "ok  " } else { "FAIL" });
        failed |= !ok;
    };
    let domid = xs.read(0, "domid");
    let ok = domid.as_deref().is_ok_and(|d| d.parse::<u16>().is_ok());
    check(ok, "read domid", show(&domid));
    let domid = domid.unwrap_or_default();
    let home = format!("/local/domain/{domid}");
    match xs.ask(GET_DOMAIN_PATH, 0, &domid) {
        Err(e) if qemu => println!("note XenStore GET_DOMAIN_PATH: error {e} (none in QEMU)"),
        p => check(p.as_ref() == Ok(&home), "GET_DOMAIN_PATH", show(&p)),
    }
    let abs = xs.read(0, &format!("{home}/domid"));
    check(abs.as_ref() == Ok(&domid), &format!("read {home}/domid"), show(&abs));

    let value = "written by the L2 guest";
    let back = xs.write(0, "data/lab-test", value).and_then(|()| xs.read(0, "data/lab-test"));
    check(back.as_deref() == Ok(value), "write + read back data/lab-test", show(&back));
    let list = xs.ask(DIRECTORY, 0, "data");
    let ok = list.as_ref().is_ok_and(|l| l.split('\0').any(|n| n == "lab-test"));
    check(ok, "ls data has lab-test", show(&list));

    let tx = transaction(xs, other);
    let after = xs.read(0, "data/tx");
    let ok = matches!((&tx, &after), (Ok((n, _)), Ok(v)) if n == v);
    check(ok, "transaction read + wrote data/tx, committed", show(&after));
    let ok = matches!(tx, Ok((_, true)));
    check(ok, "uncommitted write unseen by another connection", show(&tx));
    let _ = xs.ask(RM, 0, "data/aborted");
    let aborted = xs.start().and_then(|t| xs.write(t, "data/aborted", "x").and(xs.end(t, false)));
    let trace = aborted.and_then(|()| xs.read(0, "data/aborted"));
    check(is_error(&trace, "ENOENT"), "aborted transaction left no trace", show(&trace));

    let set = xs.ask(WATCH, 0, "data/watched\0lab").and_then(|_| xs.event(INITIAL_EVENT));
    let ok = set.as_deref().is_ok_and(|p| p.ends_with("data/watched"));
    check(ok, "watch on data/watched fired when set", show(&set));
    let fired = other.write(0, "data/watched", "1").and_then(|()| xs.event(INITIAL_EVENT));
    let ok = fired.as_deref().is_ok_and(|p| p.ends_with("data/watched"));
    check(ok, "watch fired on another connection's write", show(&fired));
    let _ = xs.ask(UNWATCH, 0, "data/watched\0lab");

    let denied = xs.write(0, "domid", &domid);
    check(is_error(&denied, "EACCES"), "writing the read-only domid", show(&denied));
    let missing = xs.read(0, "data/no-such-node");
    check(is_error(&missing, "ENOENT"), "reading a missing node", show(&missing));
    let gone = xs.ask(RM, 0, "data/lab-test").and_then(|_| xs.read(0, "data/lab-test"));
    check(is_error(&gone, "ENOENT"), "reading data/lab-test after rm", show(&gone));
    !failed
}

/// The path of the first watch event on `path` after the initial one.
fn watch(xs: &mut Xs, path: &str, timeout: Duration) -> Result<String> {
    let deadline = Instant::now() + timeout;
    xs.ask(WATCH, 0, &format!("{path}\0watch"))?;
    if let Err(e) = xs.event(INITIAL_EVENT.min(timeout)) {
        eprintln!("xenstore-tool: no initial event on {path}: {e}");
    }
    println!("watching {path}");
    xs.event(deadline.saturating_duration_since(Instant::now()))
}

/// The first non-empty control/shutdown, acknowledged with "" in a
/// transaction as Linux does (if both try, one commit gets EAGAIN).
fn await_shutdown(xs: &mut Xs, timeout: Duration) -> Result<String> {
    let deadline = Instant::now() + timeout;
    xs.ask(WATCH, 0, "control/shutdown\0await")?;
    loop {
        xs.event(deadline.saturating_duration_since(Instant::now()))?;
        loop {
            let tx = xs.start()?;
            let cmd = xs.read(tx, "control/shutdown").unwrap_or_default();
            if cmd.is_empty() {
                xs.end(tx, false)?;
                break;
            }
            xs.write(tx, "control/shutdown", "")?;
            match xs.end(tx, true) {
                Err(e) if e == "EAGAIN" => continue,
                r => return r.map(|()| cmd),
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let known = matches!(
        args[..],
        ["read" | "ls" | "rm", _] | ["write", _, _] | ["domain-path"] | ["selftest"]
            | ["selftest", "--qemu"] | ["watch", _] | ["watch", _, _]
            | ["await-shutdown"] | ["await-shutdown", _]
    );
    if !known {
        eprintln!("{USAGE}");
        exit(2);
    }
    let secs = |t: &[&str]| t.first().and_then(|s| s.parse().ok()).unwrap_or(60);
    let secs = |t: &[&str]| Duration::from_secs(secs(t));
    let result = Xs::open().and_then(|mut xs| match args[..] {
        ["read", path] => xs.read(0, path),
        ["write", path, value] => xs.write(0, path, value).map(|()| String::new()),
        ["ls", path] => xs.ask(DIRECTORY, 0, path).map(|l| l.replace('\0', "\n")),
        ["rm", path] => xs.ask(RM, 0, path).map(|_| String::new()),
        ["domain-path"] => xs.read(0, "domid").and_then(|d| xs.ask(GET_DOMAIN_PATH, 0, &d)),
        ["watch", path, ref t @ ..] => watch(&mut xs, path, secs(t)).map(|p| format!("event {p}")),
        ["await-shutdown", ref t @ ..] => await_shutdown(&mut xs, secs(t)),
        ["selftest", ref qemu @ ..] => {
            let mut other = Xs::open()?;
            exit(i32::from(!selftest(&mut xs, &mut other, !qemu.is_empty())))
        }
        _ => unreachable!("checked above"),
    });
    match result {
        Ok(out) if out.is_empty() => {}
        Ok(out) => println!("{out}"),
        Err(e) => {
            eprintln!("xenstore-tool: {e}");
            exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, HashMap};
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixStream;
    use std::sync::{Arc, Mutex};

    #[test]
    fn header_is_four_words_then_payload() {
        let m = encode(READ, 7, 3, b"domid\0");
        let word = |w: &[u8]| u32::from_ne_bytes(w.try_into().unwrap());
        let words: Vec<u32> = m[..16].chunks(4).map(word).collect();
        assert_eq!(words, [READ, 7, 3, 6]);
        assert_eq!(&m[16..], b"domid\0");
    }

    #[test]
    fn decode_waits_for_a_whole_message_and_leaves_the_next() {
        let mut bytes = encode(WATCH_EVENT, 0, 0, &strings(&["data/w", "tok"]));
        let first = bytes.len();
        bytes.extend(encode(ERROR, 2, 5, b"EACCES\0"));
        for n in 0..first {
            assert_eq!(decode(&bytes[..n]), None);
        }
        let (m, used) = decode(&bytes).unwrap();
        assert_eq!((m.ty, used, split(&m.body)), (WATCH_EVENT, first, split(b"data/w\0tok\0")));
        let (m, used) = decode(&bytes[first..]).unwrap();
        assert_eq!((m.ty, m.req_id, m.tx_id, text(&m.body)), (ERROR, 2, 5, "EACCES".into()));
        assert_eq!(first + used, bytes.len());
    }

    #[test]
    fn payload_strings() {
        assert_eq!(strings(&["data/w", "tok"]), b"data/w\0tok\0");
        assert_eq!(strings(&[""]), b"\0");
        assert_eq!(split(b"a\0bc\0"), ["a", "bc"]);
        assert!(split(b"").is_empty());
        assert_eq!((text(b"1"), text(b"7\0"), text(b"")), ("1".into(), "7".into(), String::new()));
    }

    #[test]
    fn requests_skip_events_and_stale_replies() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let mut xs = Xs::with(File::from(OwnedFd::from(ours)));
        let store = std::thread::spawn(move || {
            let mut req = [0; 22];
            theirs.read_exact(&mut req).unwrap();
            let (m, _) = decode(&req).unwrap();
            assert_eq!((m.ty, m.tx_id, m.body.as_slice()), (READ, 4, &b"domid\0"[..]));
            let mut out = encode(WATCH_EVENT, 0, 0, &strings(&["data/w", "t"]));
            out.extend(encode(READ, m.req_id + 9, 0, b"stale"));
            out.extend(encode(READ, m.req_id, 4, b"7"));
            out.chunks(5).for_each(|c| theirs.write_all(c).unwrap());
            let mut req = [0; 19];
            theirs.read_exact(&mut req).unwrap();
            let (m, _) = decode(&req).unwrap();
            assert_eq!((m.ty, m.body.as_slice()), (WRITE, &b"x\0v"[..]));
            theirs.write_all(&encode(ERROR, m.req_id, 0, b"EACCES\0")).unwrap();
            theirs
        });
        assert_eq!(xs.read(4, "domid"), Ok("7".into()));
        assert_eq!(xs.write(0, "x", "v"), Err("EACCES".into()));
        assert_eq!(xs.event(Duration::ZERO), Ok("data/w".into()));
        let _theirs = store.join().unwrap();
        assert_eq!(xs.event(Duration::from_millis(20)), Err("timeout".into()));
    }

    /// A toy XenStore: relative paths under HOME, a read-only domid,
    /// transactions that fail with EAGAIN after any other commit, watches
    /// that fire when set and on every change at or below their path.
    #[derive(Default)]
    struct Store {
        nodes: BTreeMap<String, String>,
        generation: u64,
        txs: HashMap<u32, (u64, BTreeMap<String, String>)>,
        watches: Vec<(String, String, Arc<Mutex<UnixStream>>)>,
    }

    const HOME: &str = "/local/domain/1";
    type Reply = std::result::Result<Option<Vec<u8>>, &'static str>;

    fn abs(path: &str) -> String {
        if path.starts_with('/') { path.into() } else { format!("{HOME}/{path}") }
    }

    impl Store {
        /// Sends events; forgets the watches of closed connections.
        fn fire(&mut self, changed: &str) {
            self.watches.retain(|(path, token, out)| {
                if !changed.starts_with(&abs(path)) {
                    return true;
                }
                let seen = if path.starts_with('/') { changed } else { &changed[HOME.len() + 1..] };
                let event = encode(WATCH_EVENT, 0, 0, &strings(&[seen, token]));
                out.lock().unwrap().write_all(&event).is_ok()
            });
        }

        /// The reply's body, None if sent already, or an error name.
        fn handle(&mut self, m: &Msg, out: &Arc<Mutex<UnixStream>>) -> Reply {
            let args = split(&m.body);
            let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
            let path = abs(&arg(0));
            let (nodes, committed) = match m.tx_id {
                0 => (&mut self.nodes, true),
                tx => (&mut self.txs.get_mut(&tx).ok_or("ENOENT")?.1, false),
            };
            let reply = match m.ty {
                READ => nodes.get(&path).ok_or("ENOENT")?.as_bytes().to_vec(),
                WRITE if path == abs("domid") => return Err("EACCES"),
                WRITE => {
                    let at = m.body.iter().position(|&b| b == 0).unwrap() + 1;
                    nodes.insert(path.clone(), String::from_utf8(m.body[at..].to_vec()).unwrap());
                    b"OK\0".to_vec()
                }
                RM => {
                    nodes.retain(|k, _| !k.starts_with(&path));
                    b"OK\0".to_vec()
                }
                DIRECTORY => {
                    let children = nodes.keys().filter_map(|k| k.strip_prefix(&format!("{path}/")));
                    strings(&children.filter(|c| !c.contains('/')).collect::<Vec<_>>())
                }
                GET_DOMAIN_PATH => strings(&[&format!("/local/domain/{}", arg(0))]),
                TRANSACTION_START => {
                    let id = self.txs.len() as u32 + 1;
                    self.txs.insert(id, (self.generation, self.nodes.clone()));
                    return Ok(Some(strings(&[&id.to_string()])));
                }
                TRANSACTION_END => {
                    let (generation, nodes) = self.txs.remove(&m.tx_id).ok_or("ENOENT")?;
                    if arg(0) == "T" && generation != self.generation {
                        return Err("EAGAIN");
                    } else if arg(0) == "T" {
                        let changed: Vec<String> = (nodes.iter().chain(&self.nodes))
                            .filter(|(k, _)| nodes.get(*k) != self.nodes.get(*k))
                            .map(|(k, _)| k.clone())
                            .collect();
                        self.nodes = nodes;
                        self.generation += 1;
                        changed.iter().for_each(|k| self.fire(k));
                    }
                    return Ok(Some(b"OK\0".to_vec()));
                }
                WATCH => {
                    self.watches.push((arg(0), arg(1), out.clone()));
                    let reply = encode(WATCH, m.req_id, 0, b"OK\0");
                    out.lock().unwrap().write_all(&reply).unwrap();
                    self.fire(&path);
                    return Ok(None);
                }
                _ => b"OK\0".to_vec(),
            };
            if committed && (m.ty == WRITE || m.ty == RM) {
                self.generation += 1;
                self.fire(&path);
            }
            Ok(Some(reply))
        }
    }

    /// A connection to `store`, served by a thread.
    fn connect(store: &Arc<Mutex<Store>>) -> Xs {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let (store, out) = (store.clone(), Arc::new(Mutex::new(theirs.try_clone().unwrap())));
        std::thread::spawn(move || {
            let mut theirs = theirs;
            let mut buf = Vec::new();
            let mut chunk = [0; 4096];
            while let Ok(n @ 1..) = theirs.read(&mut chunk) {
                buf.extend_from_slice(&chunk[..n]);
                while let Some((m, used)) = decode(&buf) {
                    buf.drain(..used);
                    let reply = match store.lock().unwrap().handle(&m, &out) {
                        Ok(None) => continue,
                        Ok(Some(body)) => encode(m.ty, m.req_id, m.tx_id, &body),
                        Err(e) => encode(ERROR, m.req_id, m.tx_id, &strings(&[e])),
                    };
                    out.lock().unwrap().write_all(&reply).unwrap();
                }
            }
        });
        Xs::with(File::from(OwnedFd::from(ours)))
    }

    fn toy_store() -> Arc<Mutex<Store>> {
        let store = Arc::new(Mutex::new(Store::default()));
        store.lock().unwrap().nodes.insert(abs("domid"), "1".into());
        store
    }

    #[test]
    fn selftest_passes_against_a_toy_store() {
        let store = toy_store();
        assert!(selftest(&mut connect(&store), &mut connect(&store), false));
        // And fails when a check does: here, there is no domid.
        let store = Arc::new(Mutex::new(Store::default()));
        assert!(!selftest(&mut connect(&store), &mut connect(&store), false));
    }

    #[test]
    fn await_shutdown_acknowledges_the_command() {
        let store = toy_store();
        let mut host = connect(&store);
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            host.write(0, "control/shutdown", "poweroff").unwrap();
            host
        });
        let cmd = await_shutdown(&mut connect(&store), Duration::from_secs(5));
        assert_eq!(cmd, Ok("poweroff".into()));
        assert_eq!(writer.join().unwrap().read(0, "control/shutdown"), Ok(String::new()));
    }
}
