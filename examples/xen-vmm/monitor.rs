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
//! evtchn-inject 2
//! ok
//! ```

use anyhow::{Context, Result};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::thread;

use vm_memory::GuestMemoryMmap;
use xen_evtchn::EventChannels;

use crate::options::Options;
use crate::vm::{Stop, Stopper};

const HELP: &str = "commands: info, evtchn-list, evtchn-inject PORT, quit, help";

/// Answers one command line.
pub(crate) fn command(
    line: &str,
    channels: Option<&EventChannels>,
    mem: &GuestMemoryMmap,
    options: &Options,
) -> (String, Option<Stop>) {
    let mut words = line.split_whitespace();
    let reply = match (words.next(), words.next(), words.next()) {
        (None, ..) => String::new(),
        (Some("help"), None, _) => HELP.into(),
        (Some("info"), None, _) => format!(
            "xen {} vcpus {} memory {} MiB",
            options.xen.map_or("off".into(), |v| v.to_string()),
            options.cpus,
            options.memory >> 20
        ),
        (Some("quit"), None, _) => return ("ok".into(), Some(Stop::Quit)),
        (Some("evtchn-list"), None, _) => match channels {
            None => "error: Xen is off".into(),
            Some(c) => {
                let ports = c.list(mem);
                let mut s = String::new();
                for p in &ports {
                    s += &format!(
                        "port {}: {:?} vcpu {} pending {} masked {} priority {}\n",
                        p.port,
                        p.binding,
                        p.vcpu,
                        u8::from(p.pending),
                        u8::from(p.masked),
                        p.priority
                    );
                }
                s += &format!("{} port(s)", ports.len());
                s
            }
        },
        (Some("evtchn-inject"), Some(port), None) => match (channels, port.parse::<u32>()) {
            (None, _) => "error: Xen is off".into(),
            (_, Err(_)) => format!("error: {port} is not a port number"),
            (Some(c), Ok(p)) => match c.inject(mem, p) {
                Ok(()) => "ok".into(),
                Err(e) => format!("error: port {p}: {e:?}"),
            },
        },
        _ => format!("error: unknown command {line:?}; {HELP}"),
    };
    (reply, None)
}

fn client(
    stream: UnixStream,
    channels: Option<Arc<EventChannels>>,
    mem: GuestMemoryMmap,
    stop: Stopper,
    options: Options,
) {
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { return };
        let (reply, action) = command(&line, channels.as_deref(), &mem, &options);
        if !reply.is_empty() && writeln!(out, "{reply}").is_err() {
            return;
        }
        if let Some(s) = action {
            stop.stop(s);
            return;
        }
    }
}

/// Listens on `path` (replacing a stale socket) on a thread.
pub(crate) fn serve(
    path: &Path,
    channels: Option<Arc<EventChannels>>,
    mem: GuestMemoryMmap,
    stop: Stopper,
    options: Options,
) -> Result<()> {
    let _ = std::fs::remove_file(path);
    let listener =
        UnixListener::bind(path).with_context(|| format!("cannot listen on {}", path.display()))?;
    thread::Builder::new()
        .name("monitor".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let (c, m, s, o) = (channels.clone(), mem.clone(), stop.clone(), options.clone());
                let _ = thread::Builder::new()
                    .name("monitor-client".into())
                    .spawn(move || client(stream, c, m, s, o));
            }
        })
        .context("cannot start the monitor")?;
    Ok(())
}
