// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The monitor: line commands on a Unix socket (`--monitor PATH`), like
//! QEMU's `xen-event-list` and `xen-event-inject`, plus the XenStore
//! commands of a Xen toolstack (`xenstore-ls`, `-read`, `-write`, `-rm`)
//! and `shutdown`, which asks the guest through `control/shutdown` as
//! `xl shutdown` does.
//!
//! ```text
//! $ socat - UNIX-CONNECT:/tmp/xen-vmm.sock
//! evtchn-list
//! port 1: Ipi vcpu 0 pending 0 masked 0 priority 7
//! port 2: Virq { virq: 0 } vcpu 0 pending 0 masked 0 priority 7
//! 2 port(s)
//! evtchn-inject 2
//! ok
//! xenstore-read domid
//! 1
//! shutdown poweroff
//! ok
//! ```

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::thread;

use anyhow::{Context, Result};
use vm_memory::GuestMemoryMmap;
use xen_domain::XenDomain;
use xen_store::Client;

use crate::options::Options;
use crate::vm::{Stop, Stopper};

const HELP: &str = "commands: info, evtchn-list, evtchn-inject PORT, xenstore-ls [PATH], \
    xenstore-read PATH, xenstore-write PATH VALUE, xenstore-rm PATH, \
    shutdown poweroff|reboot|suspend|halt, quit, help (XenStore paths not starting with / \
    are the guest's: /local/domain/<domid>/PATH)";

/// What the monitor reaches: the Xen domain (if any) and the rest.
#[derive(Clone)]
pub(crate) struct Monitor {
    pub(crate) domain: Option<Arc<XenDomain<GuestMemoryMmap>>>,
    pub(crate) stop: Stopper,
    pub(crate) options: Options,
}

impl Monitor {
    /// The reply to one command line.
    fn command(&self, line: &str) -> String {
        let o = &self.options;
        let words: Vec<&str> = line.split_whitespace().collect();
        match (&words[..], &self.domain) {
            ([], _) => String::new(),
            (["help"], _) => HELP.into(),
            (["info"], _) => {
                let xen = o.xen.map_or("off".into(), |v| v.to_string());
                format!("xen {xen} vcpus {} memory {} MiB", o.cpus, o.memory >> 20)
            }
            (["quit"], _) => "ok".into(),
            ([cmd, ..], Some(d)) if cmd.starts_with("xenstore-") || *cmd == "shutdown" => {
                xenstore(d, line)
            }
            (["evtchn-list" | "evtchn-inject", ..], None) => "error: Xen is off".into(),
            ([cmd, ..], None) if cmd.starts_with("xenstore-") || *cmd == "shutdown" => {
                "error: Xen is off".into()
            }
            (["evtchn-list"], Some(d)) => {
                let ports = d.channels().list(d.memory());
                let mut s = String::new();
                for p in &ports {
                    let (pending, masked) = (u8::from(p.pending), u8::from(p.masked));
                    let (binding, vcpu, prio) = (&p.binding, p.vcpu, p.priority);
                    s += &format!("port {}: {binding:?} vcpu {vcpu} ", p.port);
                    s += &format!("pending {pending} masked {masked} priority {prio}\n");
                }
                s + &format!("{} port(s)", ports.len())
            }
            (["evtchn-inject", port], Some(d)) => match port.parse() {
                Err(_) => format!("error: {port} is not a port number"),
                Ok(p) => match d.channels().inject(d.memory(), p) {
                    Ok(()) => "ok".into(),
                    Err(e) => format!("error: port {p}: {e:?}"),
                },
            },
            _ => format!("error: unknown command {line:?}; {HELP}"),
        }
    }

    fn client(&self, stream: UnixStream) {
        let Ok(mut out) = stream.try_clone() else {
            return;
        };
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            let reply = self.command(&line);
            // Every command gets its reply line, an empty value too.
            if !line.trim().is_empty() && writeln!(out, "{reply}").is_err() {
                return;
            }
            if line.split_whitespace().eq(["quit"]) {
                return self.stop.stop(Stop::Quit);
            }
        }
    }

    /// Listens on `path` (replacing a stale socket) on a thread.
    pub(crate) fn serve(self, path: &Path) -> Result<()> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)
            .with_context(|| format!("cannot listen on {}", path.display()))?;
        let serve = move || {
            for stream in listener.incoming().flatten() {
                let m = self.clone();
                let _ = thread::Builder::new()
                    .name("monitor-client".into())
                    .spawn(move || m.client(stream));
            }
        };
        thread::Builder::new().name("monitor".into()).spawn(serve)?;
        Ok(())
    }
}

/// The XenStore commands: what `xenstore-ls`, `-read`, `-write`, `-rm`
/// and `xl shutdown` do, as the back-end domain (every node readable).
fn xenstore(d: &XenDomain<GuestMemoryMmap>, line: &str) -> String {
    let Some(client) = d.store_client() else {
        return "error: the domain has no XenStore".into();
    };
    let home = Client::domain_path(d.config().domid);
    let abs = |p: &str| {
        if p.starts_with('/') {
            p.to_owned()
        } else {
            format!("{home}/{p}")
        }
    };
    let mut words = line.split_whitespace();
    let cmd = words.next().unwrap_or_default();
    let path = words.next();
    let reply = match (cmd, path) {
        ("xenstore-read", Some(p)) => client
            .read(&abs(p))
            .map(|v| String::from_utf8_lossy(&v).into_owned()),
        ("xenstore-write", Some(p)) => {
            // The value is the rest of the line, spaces included.
            let value = line
                .trim_start()
                .splitn(3, char::is_whitespace)
                .nth(2)
                .unwrap_or("")
                .trim_start();
            client.write(&abs(p), value).map(|()| "ok".into())
        }
        ("xenstore-rm", Some(p)) => client.rm(&abs(p)).map(|()| "ok".into()),
        ("xenstore-ls", p) => {
            let root = abs(p.unwrap_or(&home));
            let mut out = Vec::new();
            list(&client, &root, 0, &mut out).map(|()| out.join("\n"))
        }
        ("shutdown", Some(how)) => d.request_shutdown(how).map(|()| "ok".into()),
        _ => return format!("error: usage: {HELP}"),
    };
    reply.unwrap_or_else(|e| format!("error: {e:?}"))
}

/// `xenstore-ls` of `path`: each node as `name = "value"`, children
/// indented under it.
fn list(
    client: &Client,
    path: &str,
    depth: usize,
    out: &mut Vec<String>,
) -> Result<(), xen_abi::errno::XenErrno> {
    for child in client.directory(path)? {
        let full = if path == "/" {
            format!("/{child}")
        } else {
            format!("{path}/{child}")
        };
        let value = client.read(&full).unwrap_or_default();
        out.push(format!(
            "{:indent$}{child} = \"{}\"",
            "",
            String::from_utf8_lossy(&value).escape_debug(),
            indent = depth
        ));
        list(client, &full, depth + 1, out)?;
    }
    Ok(())
}
