// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The example VMM (`examples/xen-vmm`) run as a process: the embedded
//! flow guest on one and two vCPUs, an ELF64 and an ELF32 (machine
//! x86-64) booted through their PVH note, the monitor, `--trace`, and
//! every way a run can fail (bad options, a missing or truncated image, a
//! crashing guest, a guest that never shuts down, a plain KVM VM without
//! Xen).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use xen_guest_harness::{guests, kvm_available};

/// The example binary, next to this test. `cargo test --workspace`
/// builds examples; `cargo test --test xen_vmm` does not, so a missing
/// binary, or one older than this test, is (re)built with cargo first.
fn vmm() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let exe = std::env::current_exe().expect("test path");
        let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
        let path = dir.join("examples").join("xen-vmm");
        let mtime = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        if mtime(&path).is_none_or(|m| Some(m) < mtime(&exe)) {
            let mut c = Command::new(env!("CARGO"));
            c.args(["build", "--example", "xen-vmm", "--manifest-path"])
                .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
            if !cfg!(debug_assertions) {
                c.arg("--release");
            }
            assert!(c.status().expect("cargo").success(), "building xen-vmm");
        }
        path
    })
    .clone()
}

struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str]) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(vmm())
        .args(args)
        .output()
        .expect("run xen-vmm");
    Run {
        status: status.code().expect("an exit status"),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

impl Run {
    #[track_caller]
    fn expect(&self, status: i32, needle: &str) {
        assert!(
            self.status == status && (self.stdout.contains(needle) || self.stderr.contains(needle)),
            "wanted status {status} and {needle:?}; got {}\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
    }
}

fn temp(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("xen-vmm-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Every step of the flow, in order, and a clean poweroff.
#[track_caller]
fn assert_flow(r: &Run, vcpus: u32) {
    r.expect(0, "the guest powered off");
    let mut at = 0;
    for step in 1..=14 {
        let tag = format!("flow: [{step}]");
        let found = r.stdout[at..]
            .find(&tag)
            .unwrap_or_else(|| panic!("step {step} missing or out of order:\n{}", r.stdout));
        at += found;
    }
    assert!(
        r.stdout.contains(&format!("[13] {vcpus} vCPU")),
        "{}",
        r.stdout
    );
}

#[test]
fn test_default_flow_one_vcpu() {
    if !kvm_available("test_default_flow_one_vcpu") {
        return;
    }
    let r = run(&[]);
    assert_flow(&r, 1);
    for needle in [
        "XenVMMXenVMM at 40000000",
        "xen_version: 4.10",
        "magic 49d2",
        "shared_info mapped at GFN f0000 (platform BAR1)",
        "took the upcall",
        "PV timer fired on VIRQ_TIMER",
        "wall clock 20",
    ] {
        assert!(r.stdout.contains(needle), "{needle}:\n{}", r.stdout);
    }
}

#[test]
fn test_default_flow_four_vcpus_exchange_ipis() {
    if !kvm_available("test_default_flow_four_vcpus_exchange_ipis") {
        return;
    }
    // Four vCPUs on this machine's two cores: each AP's upcall must take
    // only its own port while the others' are pending beside it.
    let r = run(&["--cpus", "4", "--xen-version", "4.17", "--xen-vapic"]);
    assert_flow(&r, 4);
    assert!(r.stdout.contains("each answered"), "{}", r.stdout);
    assert!(r.stdout.contains("Xen 4.17"), "{}", r.stdout);
}

#[test]
fn test_elf_through_pvh_note() {
    if !kvm_available("test_elf_through_pvh_note") {
        return;
    }
    let elf = temp("flow.elf", guests::FLOW.elf);
    let r = run(&["--elf", elf.to_str().unwrap(), "--memory", "64M"]);
    assert_flow(&r, 1);
    assert!(r.stdout.contains("booting PVH entry"), "{}", r.stdout);
}

/// `image` (an ELF64 file) as ELF32 with machine x86-64, the way `objcopy
/// -O elf32-x86-64` ships 64-bit kernels for Xen's HVM domain builder:
/// its loadable segments and notes, at the same addresses.
fn elf32_x86_64(image: &[u8]) -> Vec<u8> {
    let u = |off: usize, n: usize| {
        let mut b = [0u8; 8];
        b[..n].copy_from_slice(&image[off..off + n]);
        u64::from_le_bytes(b)
    };
    let (entry, phoff, phentsize, phnum) = (u(24, 8), u(32, 8), u(54, 2), u(56, 2));
    let phdrs: Vec<[u64; 8]> = (0..phnum as usize)
        .map(|i| phoff as usize + i * phentsize as usize)
        // type, offset, vaddr, paddr, filesz, memsz, flags, align
        .map(|p| [0, 8, 16, 24, 32, 40, 4, 48].map(|f| u(p + f, if f < 8 { 4 } else { 8 })))
        .filter(|h| h[0] == 1 || h[0] == 4)
        .collect();
    let mut data_at = 52 + 32 * phdrs.len();
    let (mut headers, mut data) = (Vec::new(), Vec::new());
    for mut h in phdrs {
        let bytes = &image[h[1] as usize..(h[1] + h[4]) as usize];
        h[1] = data_at as u64;
        data_at += bytes.len().next_multiple_of(16);
        data.extend_from_slice(bytes);
        data.resize(data.len().next_multiple_of(16), 0);
        headers.extend(h.iter().flat_map(|&v| (v as u32).to_le_bytes()));
    }
    let mut f = b"\x7fELF\x01\x01\x01".to_vec();
    f.resize(16, 0);
    f.extend([2u16, 62].iter().flat_map(|v| v.to_le_bytes()));
    let words = [1, entry as u32, 52, 0, 0];
    f.extend(words.iter().flat_map(|v| v.to_le_bytes()));
    let halves = [52u16, 32, (headers.len() / 32) as u16, 40, 0, 0];
    f.extend(halves.iter().flat_map(|v| v.to_le_bytes()));
    [f, headers, data].concat()
}

#[test]
fn test_elf32_x86_64_through_pvh_note() {
    if !kvm_available("test_elf32_x86_64_through_pvh_note") {
        return;
    }
    let elf = temp("flow32.elf", &elf32_x86_64(guests::FLOW.elf));
    let r = run(&["--elf", elf.to_str().unwrap(), "--memory", "64M"]);
    assert_flow(&r, 1);
    assert!(r.stdout.contains("flow: [14] done"), "{}", r.stdout);
    assert!(r.stdout.contains("booting PVH entry"), "{}", r.stdout);
}

#[test]
fn test_trace_names_every_hypercall() {
    if !kvm_available("test_trace_names_every_hypercall") {
        return;
    }
    let r = run(&["--trace"]);
    r.expect(0, "powered off");
    for needle in [
        "vcpu0 xen_version XENVER_version(0x0",
        ") = 0x4000a",
        "memory_op XENMEM_add_to_physmap(",
        "event_channel_op EVTCHNOP_send(",
        "sched_op SCHEDOP_shutdown(",
    ] {
        assert!(r.stderr.contains(needle), "{needle}:\n{}", r.stderr);
    }
}

#[test]
fn test_guest_crash_is_an_error_status() {
    if !kvm_available("test_guest_crash_is_an_error_status") {
        return;
    }
    run(&["--cmdline", "crash"]).expect(3, "the guest crashed");
}

#[test]
fn test_hung_guest_is_stopped_by_its_watchdog() {
    if !kvm_available("test_hung_guest_is_stopped_by_its_watchdog") {
        return;
    }
    // The guest arms a 1 s watchdog, then halts with interrupts off: only
    // the VMM's event thread can end the VM, long before the timeout.
    let r = run(&["--cmdline", "watchdog", "--timeout", "20"]);
    r.expect(7, "reason SHUTDOWN_watchdog");
    assert!(r.stdout.contains("armed 1 s watchdog 1"), "{}", r.stdout);
}

#[test]
fn test_guest_that_never_shuts_down_hits_the_timeout() {
    if !kvm_available("test_guest_that_never_shuts_down_hits_the_timeout") {
        return;
    }
    let start = Instant::now();
    let r = run(&["--cmdline", "hang", "--timeout", "2"]);
    r.expect(124, "did not shut down before --timeout");
    assert!(r.stdout.contains("never shutting down"), "{}", r.stdout);
    assert!(start.elapsed() < Duration::from_secs(30));
}

#[test]
fn test_plain_kvm_vm_has_no_xen() {
    if !kvm_available("test_plain_kvm_vm_has_no_xen") {
        return;
    }
    let r = run(&["--xen-version", "off"]);
    r.expect(9, "no Xen signature in CPUID");
    assert!(!r.stdout.contains("hypercalls on the"), "{}", r.stdout);
}

#[test]
fn test_bad_options_exit_2_with_a_message() {
    for (args, needle) in [
        (&["--cpus", "0"][..], "--cpus 0: must be 1 to 4"),
        (&["--memory", "12Q"], "not a size"),
        (&["--accel", "warp"], "use auto, kernel or user"),
        (&["--xen-version", "0x410"], "--xen-version 0x410"),
        (&["--what"], "unknown option --what"),
    ] {
        run(args).expect(2, needle);
    }
    run(&["--help"]).expect(0, "usage: xen-vmm");
}

#[test]
fn test_missing_and_truncated_images() {
    run(&["--elf", "/nonexistent/kernel.elf"]).expect(1, "cannot read ELF image");
    run(&["--kernel", "/nonexistent/bzImage"]).expect(1, "cannot read kernel");
    if !kvm_available("test_missing_and_truncated_images") {
        return;
    }
    let elf = guests::FLOW.elf;
    let short = temp("short.elf", &elf[..elf.len() / 3]);
    run(&["--elf", short.to_str().unwrap()]).expect(1, "truncated");
    let junk = temp("junk.bin", b"this is not a kernel");
    run(&["--elf", junk.to_str().unwrap()]).expect(1, "not an ELF file");
    run(&["--kernel", junk.to_str().unwrap()]).expect(1, "not a loadable bzImage");
}

#[test]
fn test_kernel_path_refused_without_kernel_xen() {
    if !kvm_available("test_kernel_path_refused_without_kernel_xen") {
        return;
    }
    if xen_guest_harness::xen_hvm_caps().unwrap() != 0 {
        return xen_guest_harness::skip(
            "test_kernel_path_refused_without_kernel_xen",
            "this KVM has Xen support",
        );
    }
    run(&["--accel", "kernel"]).expect(1, "KVM_CAP_XEN_HVM");
}

#[test]
fn test_monitor_lists_and_injects_events() {
    if !kvm_available("test_monitor_lists_and_injects_events") {
        return;
    }
    let sock = std::env::temp_dir().join(format!("xen-vmm-mon-{}.sock", std::process::id()));
    let child = Command::new(vmm())
        .args(["--cmdline", "hang", "--timeout", "60", "--monitor"])
        .arg(&sock)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let stream = loop {
        match UnixStream::connect(&sock) {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("monitor socket: {e}"),
        }
    };
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut ask = |cmd: &str| -> String {
        writeln!(&stream, "{cmd}").unwrap();
        let mut reply = String::new();
        loop {
            let mut line = String::new();
            assert!(reader.read_line(&mut line).unwrap() > 0, "monitor closed");
            reply += &line;
            if !cmd.starts_with("evtchn-list") || line.contains("port(s)") {
                return reply;
            }
        }
    };
    // The guest binds an IPI and VIRQ_TIMER, then hangs.
    let list = loop {
        let l = ask("evtchn-list");
        if l.contains("2 port(s)") || Instant::now() > deadline {
            break l;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(list.contains("port 1: Ipi"), "{list}");
    assert!(list.contains("port 2: Virq"), "{list}");
    assert_eq!(ask("evtchn-inject 1").trim(), "ok");
    assert!(ask("evtchn-inject 77").starts_with("error: port 77"));
    assert!(ask("evtchn-inject x").starts_with("error: x is not a port"));
    assert!(ask("info").contains("vcpus 1"));
    assert!(ask("frobnicate").starts_with("error: unknown command"));
    assert_eq!(ask("quit").trim(), "ok");
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("stopped by the monitor"));
    assert!(!sock.exists(), "the socket is removed at exit");
}
