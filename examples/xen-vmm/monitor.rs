// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The monitor: line commands on a Unix socket (`--monitor PATH`), like
//! QEMU's `xen-event-list` and `xen-event-inject`.
//!
//! ```text
//! $ socat - UNIX-CONNECT:/tmp/xen-vmm.sock
//! evtchn-list
//! port 1: Ipi vcpu 0 pending 0 masked 0 priority 7
//! port 2: Virq { virq: 0 } vcpu 0 pending 0 masked 0 priority 7
//! 2 port(s)
//! evtchn-inject 2
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

use crate::options::Options;
use crate::vm::{Stop, Stopper};

const HELP: &str = "commands: info, evtchn-list, evtchn-inject PORT, quit, help";

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
            (["evtchn-list" | "evtchn-inject", ..], None) => "error: Xen is off".into(),
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
            if !reply.is_empty() && writeln!(out, "{reply}").is_err() {
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
