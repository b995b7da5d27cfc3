// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Boots the CPUID guest under KVM with the Xen leaves from `xen-cpuid` and
//! prints what the guest saw.
//!
//! This is the project's main job until the example VMM exists: it shows a
//! guest finding Xen in CPUID on a plain KVM host.
//!
//! Usage: `cargo run --release --example cpuid-guest [-- --xen-version 0x4000a] [--xen-vapic]`

use std::collections::BTreeMap;
use std::process::ExitCode;

use kvm_bindings::{CpuId, KVM_CPUID_FLAG_SIGNIFCANT_INDEX};
use xen_guest_harness::{Runner, guests};
use xen_on_kvm::abi::cpuid::{KVM_CPUID_SIGNATURE, XEN_CPUID_SIGNATURE};
use xen_on_kvm::cpuid::{XenCpuid, XenCpuidConfig, XenVersion};

fn usage() -> ExitCode {
    eprintln!("usage: cpuid-guest [--xen-version 0x4000a|4.10] [--xen-vapic]");
    ExitCode::from(2)
}

fn text(regs: [u32; 3]) -> String {
    regs.iter()
        .flat_map(|r| r.to_le_bytes())
        .map(|b| {
            if b.is_ascii_graphic() {
                char::from(b)
            } else {
                '.'
            }
        })
        .collect()
}

fn main() -> ExitCode {
    let mut version: XenVersion = "0x4000a".parse().expect("default version");
    let mut vapic = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--xen-version" => match args.next().map(|v| v.parse::<XenVersion>()) {
                Some(Ok(v)) => version = v,
                Some(Err(e)) => {
                    eprintln!("cpuid-guest: {e}");
                    return ExitCode::from(2);
                }
                None => return usage(),
            },
            "--xen-vapic" => vapic = true,
            _ => return usage(),
        }
    }
    let mut config = XenCpuidConfig::new(version);
    config.vapic = vapic;
    let xen = XenCpuid::new(config);
    println!(
        "xen-on-kvm: booting the CPUID guest under KVM as Xen {version} (leaves at {:#x}, hypercall MSR {:#x})",
        xen.base(),
        xen.hypercall_msr()
    );

    let outcome = match Runner::new(guests::CPUID)
        .cpuid(move |c: &mut CpuId, vcpu| xen.apply(c, vcpu).map_err(|e| e.to_string()))
        .run()
    {
        Ok(o) => o,
        Err(e) => {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            eprintln!("cpuid-guest: {msg}");
            return ExitCode::FAILURE;
        }
    };
    if outcome.status() != Some(0) {
        eprintln!(
            "cpuid-guest: the guest ended with {:?}:\n{}",
            outcome.end, outcome.console
        );
        return ExitCode::FAILURE;
    }

    let seen: BTreeMap<(u32, u32), [u32; 4]> = outcome
        .lines_with("cpuid ")
        .map(|l| {
            let f: Vec<u32> = l
                .split(' ')
                .map(|x| u32::from_str_radix(x, 16).unwrap())
                .collect();
            ((f[0], f[1]), [f[2], f[3], f[4], f[5]])
        })
        .collect();
    println!("the guest saw (leaf.subleaf: eax ebx ecx edx):");
    let mut mismatches = 0;
    for e in xen.leaves(0) {
        let got = seen[&(e.function, e.index)];
        let want = [e.eax, e.ebx, e.ecx, e.edx];
        let note = if e.function == xen.base() {
            format!("  \"{}\"", text([got[1], got[2], got[3]]))
        } else {
            String::new()
        };
        let sub = if e.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX != 0 {
            e.index.to_string()
        } else {
            "*".into()
        };
        let ok = if got == want { "" } else { "  MISMATCH" };
        mismatches += usize::from(got != want);
        println!(
            "  {:#x}.{sub}: {:08x} {:08x} {:08x} {:08x}{note}{ok}",
            e.function, got[0], got[1], got[2], got[3]
        );
    }
    let kvm_seen = seen
        .values()
        .filter(|r| [r[1], r[2], r[3]] == KVM_CPUID_SIGNATURE)
        .count();
    let base = outcome.lines_with("xen-base ").next().unwrap_or("0");
    println!(
        "the guest scanned like Linux and found {} at {base}; KVM signatures seen in 0x40000000..0x400001ff: {kvm_seen}",
        text(XEN_CPUID_SIGNATURE)
    );
    println!(
        "guest exited with status 0 after {} port-I/O exits in {:.0?}",
        outcome.exits.pio, outcome.wall
    );
    if mismatches > 0 || kvm_seen > 0 {
        eprintln!("cpuid-guest: {mismatches} leaves differ from what xen-cpuid built");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
