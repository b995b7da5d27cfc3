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
    for step in 1..=17 {
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
        "grant table v1, 1 of 64 frames",
        "ref 1 (XenStore): flags 1 domain 0 GFN feffc",
        "XenStore at GFN feffc port 1: home /local/domain/1, domid 1",
        "watch fired on data/flow-watch",
        "PV console at GFN fefff port 2: this line came through its ring",
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
    assert!(r.stdout.contains("flow: [17] done"), "{}", r.stdout);
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

/// A running VMM with its monitor connected.
struct Monitored {
    child: std::process::Child,
    stream: UnixStream,
    reader: BufReader<UnixStream>,
    sock: PathBuf,
    deadline: Instant,
}

impl Monitored {
    fn start(name: &str, args: &[&str]) -> Self {
        let sock = std::env::temp_dir().join(format!("xen-vmm-{name}-{}.sock", std::process::id()));
        let child = Command::new(vmm())
            .args(args)
            .args(["--timeout", "60", "--monitor"])
            .arg(&sock)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let stream = loop {
            match UnixStream::connect(&sock) {
                Ok(s) => break s,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(e) => panic!("monitor socket: {e}"),
            }
        };
        let reader = BufReader::new(stream.try_clone().unwrap());
        Self {
            child,
            stream,
            reader,
            sock,
            deadline,
        }
    }

    /// Sends `cmd`; its reply (up to the `end` line for multi-line ones).
    fn ask_until(&mut self, cmd: &str, end: impl Fn(&str) -> bool) -> String {
        writeln!(&self.stream, "{cmd}").unwrap();
        let mut reply = String::new();
        loop {
            let mut line = String::new();
            assert!(
                self.reader.read_line(&mut line).unwrap() > 0,
                "monitor closed"
            );
            reply += &line;
            if end(&line) {
                return reply;
            }
        }
    }

    fn ask(&mut self, cmd: &str) -> String {
        self.ask_until(cmd, |_| true)
    }

    /// Asks `cmd` until its reply contains `want` (the guest gets there).
    fn ask_for(&mut self, cmd: &str, want: &str) -> String {
        loop {
            let r = self.ask(cmd);
            if r.contains(want) || Instant::now() > self.deadline {
                return r;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn finish(self) -> Run {
        drop(self.stream);
        let out = self.child.wait_with_output().unwrap();
        assert!(!self.sock.exists(), "the socket is removed at exit");
        Run {
            status: out.status.code().expect("an exit status"),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

#[test]
fn test_monitor_lists_and_injects_events() {
    if !kvm_available("test_monitor_lists_and_injects_events") {
        return;
    }
    let mut m = Monitored::start("events", &["--cmdline", "hang"]);
    let deadline = m.deadline;
    // The toolstack's XenStore and console ports, then the guest's IPI
    // and VIRQ_TIMER; then it hangs.
    let list = loop {
        let l = m.ask_until("evtchn-list", |l| l.contains("port(s)"));
        if l.contains("4 port(s)") || Instant::now() > deadline {
            break l;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(list.contains("port 1: Backend"), "{list}");
    assert!(list.contains("port 2: Backend"), "{list}");
    assert!(list.contains("port 3: Ipi"), "{list}");
    assert!(list.contains("port 4: Virq"), "{list}");
    assert_eq!(m.ask("evtchn-inject 3").trim(), "ok");
    assert!(m.ask("evtchn-inject 77").starts_with("error: port 77"));
    assert!(
        m.ask("evtchn-inject x")
            .starts_with("error: x is not a port")
    );
    assert!(m.ask("info").contains("vcpus 1"));
    assert!(m.ask("frobnicate").starts_with("error: unknown command"));
    assert_eq!(m.ask("quit").trim(), "ok");
    m.finish().expect(0, "stopped by the monitor");
}

#[test]
fn test_monitor_reads_and_writes_xenstore() {
    if !kvm_available("test_monitor_reads_and_writes_xenstore") {
        return;
    }
    let mut m = Monitored::start("xenstore", &["--cmdline", "hang"]);
    // The guest's own write, seen from the host.
    assert_eq!(m.ask_for("xenstore-read data/flow", "1").trim(), "1");
    assert_eq!(m.ask("xenstore-read domid").trim(), "1");
    assert_eq!(
        m.ask("xenstore-read /local/domain/1/name").trim(),
        "xen-vmm-guest"
    );
    assert_eq!(m.ask("xenstore-write data/note two words").trim(), "ok");
    assert_eq!(m.ask("xenstore-read data/note").trim(), "two words");
    assert_eq!(m.ask("xenstore-rm data/note").trim(), "ok");
    assert_eq!(m.ask("xenstore-read data/note").trim(), "error: ENOENT");
    let ls = m.ask_until("xenstore-ls console", |l| l.starts_with("port"));
    assert!(ls.contains("ring-ref = \"1044479\""), "{ls}");
    assert!(m.ask("xenstore-read").starts_with("error: usage"));
    // An empty value is an empty reply line.
    assert_eq!(m.ask("xenstore-read control/shutdown"), "\n");
    assert_eq!(m.ask("quit").trim(), "ok");
    m.finish().expect(0, "stopped by the monitor");
}

#[test]
fn test_monitor_shutdown_asks_the_guest_through_xenstore() {
    if !kvm_available("test_monitor_shutdown_asks_the_guest_through_xenstore") {
        return;
    }
    for (how, status, said) in [
        ("poweroff", 0, "the guest powered off"),
        ("reboot", 5, "reason SHUTDOWN_reboot"),
    ] {
        let mut m = Monitored::start(how, &["--cmdline", "await-shutdown"]);
        // As xl does: only once the guest said it handles requests.
        let offered = m.ask_for("xenstore-read control/feature-poweroff", "1");
        assert_eq!(offered.trim(), "1");
        // The guest may power off before the reply is written.
        writeln!(&m.stream, "shutdown {how}").unwrap();
        let r = m.finish();
        r.expect(status, said);
        assert!(
            r.stdout
                .contains(&format!("flow: control/shutdown says {how}")),
            "{}",
            r.stdout
        );
    }
}

#[test]
fn test_console_choice_serial_and_none_have_no_pv_console() {
    if !kvm_available("test_console_choice_serial_and_none_have_no_pv_console") {
        return;
    }
    for choice in ["serial", "none"] {
        let r = run(&["--console", choice]);
        assert_flow(&r, 1);
        // HVM_PARAM_CONSOLE_PFN is -EINVAL, never a success with page 0.
        assert!(
            r.stdout
                .contains("flow: [16] no PV console (HVM_PARAM_CONSOLE_PFN: -22)"),
            "{}",
            r.stdout
        );
    }
}
