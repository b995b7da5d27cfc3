// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The whole Xen HVM guest flow, step by step, as the example VMM's
//! embedded default guest (`cargo run --example xen-vmm`).
//!
//! Booted through its PVH note (32-bit entry, `hvm_start_info` in EBX; the
//! runtime switches to long mode), it: finds Xen in CPUID, installs the
//! hypercall page, asks `xen_version`, moves its console to `console_io`,
//! finds the Xen platform PCI device by a configuration-space scan, checks
//! its magic and unplugs the emulated disks and NICs, maps shared_info into
//! the device's MMIO BAR, registers its vcpu_info, sets its upcall vector,
//! binds an IPI and VIRQ_TIMER, sends itself an event and takes the
//! upcall, arms a PV timer and takes that, reads the wall clock and its
//! pvclock, exchanges IPIs with every other vCPU (started by INIT/SIPI),
//! sets up its grant table (finding the toolstack's reserved entries),
//! reads its domid from XenStore, commits a transaction, takes a watch
//! event, moves its console to the PV console ring, and powers off with
//! `SCHEDOP_shutdown`.
//!
//! The command line (from `hvm_start_info`) can ask for a different end:
//! `await-shutdown` waits for a toolstack request in XenStore's
//! `control/shutdown` (`poweroff`, `reboot`) as Linux does,
//! `crash` shuts down with reason crash, `hang` never shuts down, and
//! `watchdog` arms a 1 s watchdog and then spins with interrupts off (Xen
//! shuts the domain down with reason watchdog). A step that fails prints
//! why and crashes the domain.

#![no_std]
#![no_main]

use core::hint::spin_loop;
use core::ptr::read_volatile;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use xen_guest_rt::pv::{console, gnttab, xs};
use xen_guest_rt::xen::{self, evtchn, evtchnop, get, hypercall, install_hypercall_page, nr, put, upcall, xen_base};
use xen_guest_rt::{Hex, Start, cpuid, entry, in16, in32, out16, out32, println, rdtsc};

const DOMID_SELF: u64 = 0x7ff0;
const VECTOR: u8 = 0xf3;
const START_INFO_MAGIC: u32 = 0x336e_c578;
const MAX_VCPUS: u64 = 4;
const VIRQ_TIMER: u64 = 0;
const SHUTDOWN_POWEROFF: u64 = 0;
const SHUTDOWN_REBOOT: u64 = 1;
const SHUTDOWN_CRASH: u64 = 3;

/// A page of guest RAM for the vcpu_info of each vCPU (64 bytes each).
#[repr(C, align(4096))]
struct VcpuInfoPage([u8; 4096]);
static mut VCPU_INFO: VcpuInfoPage = VcpuInfoPage([0; 4096]);

/// Progress between vCPU 0 and the others.
static STAGE: AtomicU32 = AtomicU32::new(0);
/// The IPI port bound to each vCPU.
static IPI_PORT: [AtomicU64; MAX_VCPUS as usize] = [const { AtomicU64::new(0) }; 4];
/// Application processors that took vCPU 0's IPI and answered.
static AP_DONE: AtomicU32 = AtomicU32::new(0);
static SHINFO: AtomicU64 = AtomicU64::new(0);

/// Prints a failed step and crashes the domain.
fn fail(step: &str, rc: i64) -> ! {
    println!("FAILED: ", step, " returned ", rc);
    shutdown(SHUTDOWN_CRASH)
}

fn check(step: &str, rc: i64) -> i64 {
    if rc < 0 {
        fail(step, rc);
    }
    rc
}

fn shutdown(reason: u64) -> ! {
    xen_guest_rt::console().flush();
    put(0, 0, reason);
    hypercall(nr::SCHED_OP, [2, xen::arg(0), 0, 0, 0]);
    // Only reached if the VMM ignored the request.
    xen_guest_rt::exit(0xdead_0002)
}

/// `console_io(CONSOLEIO_write)`: the runtime's console sink once the
/// hypercall page exists.
fn xen_console(bytes: &[u8]) {
    hypercall(nr::CONSOLE_IO, [0, bytes.len() as u64, bytes.as_ptr() as u64, 0, 0]);
}

fn pci_read(bdf: u32, reg: u32) -> u32 {
    out32(0xcf8, 0x8000_0000 | bdf << 8 | reg);
    in32(0xcfc)
}

/// Finds 5853:0001 on bus 0; returns (device number, BAR1 address).
fn find_platform() -> Option<(u32, u64)> {
    for dev in 0..32 {
        let id = pci_read(dev << 3, 0);
        if id == 0x0001_5853 {
            let class = pci_read(dev << 3, 8) >> 8;
            println!("  found 5853:0001 at 00:", dev / 10, dev % 10, ".0, class ", Hex(class));
            return Some((dev, u64::from(pci_read(dev << 3, 0x14) & !0xf)));
        }
    }
    None
}

/// The command line the VMM put in `hvm_start_info`, if any.
fn cmdline(start_info: u64) -> &'static [u8] {
    if start_info == 0 {
        return b"";
    }
    // SAFETY: the VMM's hvm_start_info, identity-mapped low memory.
    let (magic, ptr) = unsafe {
        (
            read_volatile(start_info as *const u32),
            read_volatile((start_info + 24) as *const u64),
        )
    };
    if magic != START_INFO_MAGIC || ptr == 0 {
        return b"";
    }
    let mut len = 0;
    // SAFETY: a NUL-terminated string the VMM wrote; bounded at 1 KiB.
    while len < 1024 && unsafe { read_volatile((ptr + len) as *const u8) } != 0 {
        len += 1;
    }
    // SAFETY: the `len` bytes just read.
    unsafe { core::slice::from_raw_parts(ptr as *const u8, len as usize) }
}

fn has_word(line: &[u8], word: &[u8]) -> bool {
    line.split(|&b| b == b' ').any(|w| w == word)
}

/// The days-since-1970 to civil date conversion (proleptic Gregorian).
fn date(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn shinfo_u32(off: u64) -> u32 {
    // SAFETY: shared_info, mapped by this guest.
    unsafe { read_volatile((SHINFO.load(Ordering::SeqCst) + off) as *const u32) }
}

/// The wall clock with Xen's version protocol (odd: being updated).
fn wall_clock() -> (u64, u32) {
    loop {
        let v = shinfo_u32(3072);
        let (sec, nsec, hi) = (shinfo_u32(3076), shinfo_u32(3080), shinfo_u32(3084));
        if v & 1 == 0 && v == shinfo_u32(3072) {
            return (u64::from(hi) << 32 | u64::from(sec), nsec);
        }
    }
}

/// Xen system time now, from this vCPU's vcpu_time_info (pvclock).
fn pvclock(info: u64) -> u64 {
    let t = info + 32;
    loop {
        // SAFETY: this vCPU's registered vcpu_info (its time part).
        let (v, stamp, sys, mul, shift, v2) = unsafe {
            let v = read_volatile(t as *const u32);
            (
                v,
                read_volatile((t + 8) as *const u64),
                read_volatile((t + 16) as *const u64),
                read_volatile((t + 24) as *const u32),
                read_volatile((t + 28) as *const i8),
                read_volatile(t as *const u32),
            )
        };
        if v & 1 != 0 || v != v2 {
            continue;
        }
        let mut delta = rdtsc().wrapping_sub(stamp);
        delta = if shift >= 0 {
            delta << shift
        } else {
            delta >> -shift
        };
        return sys + ((u128::from(delta) * u128::from(mul)) >> 32) as u64;
    }
}

fn vcpu_info_addr(vcpu: u64) -> u64 {
    (&raw const VCPU_INFO) as u64 + 64 * vcpu
}

/// VCPUOP_register_vcpu_info for `vcpu`, then the upcall vector.
fn setup_vcpu(vcpu: u64) {
    let info = vcpu_info_addr(vcpu);
    put(vcpu, 0, info >> 12);
    put(vcpu, 1, info & 0xfff);
    check(
        "VCPUOP_register_vcpu_info",
        hypercall(nr::VCPU_OP, [10, vcpu, xen::arg(vcpu), 0, 0]),
    );
    upcall::install(VECTOR, SHINFO.load(Ordering::SeqCst));
    upcall::set_vcpu_info(info);
    check(
        "HVMOP_set_evtchn_upcall_vector",
        xen::set_upcall_vector(vcpu, vcpu, VECTOR),
    );
}

fn bind_ipi(vcpu: u64) -> u64 {
    put(vcpu, 0, vcpu);
    check("EVTCHNOP_bind_ipi", evtchn(vcpu, evtchnop::BIND_IPI));
    let port = get(vcpu, 0) >> 32;
    upcall::claim(port, vcpu);
    port
}

fn send(vcpu: u64, port: u64) {
    put(vcpu, 0, port);
    check("EVTCHNOP_send", evtchn(vcpu, evtchnop::SEND));
}

/// Takes upcalls until one of them handled `port`.
fn wait_port(port: u64) {
    let mut seen = 0;
    loop {
        let count = upcall::count();
        seen |= upcall::take_seen();
        if seen & 1 << port != 0 {
            return;
        }
        upcall::wait(count + 1);
    }
}

fn wait_stage(n: u32) {
    while STAGE.load(Ordering::SeqCst) < n {
        spin_loop();
    }
}

/// An application processor: its own vcpu_info, vector and IPI port; it
/// answers vCPU 0's IPI with one of its own.
fn ap(vcpu: u64) -> u32 {
    wait_stage(1);
    setup_vcpu(vcpu);
    let port = bind_ipi(vcpu);
    IPI_PORT[vcpu as usize].store(port, Ordering::SeqCst);
    wait_port(port);
    send(vcpu, IPI_PORT[0].load(Ordering::SeqCst));
    AP_DONE.fetch_add(1, Ordering::SeqCst);
    0
}

/// A XenStore step that must succeed.
fn xs_check<T>(step: &str, r: Result<T, xs::Error>) -> T {
    r.unwrap_or_else(|e| {
        println!("FAILED: XenStore ", step, ": ", *e.name());
        shutdown(SHUTDOWN_CRASH)
    })
}

/// Steps 14-16: the grant table, XenStore and the PV console, as a Linux
/// front end sets them up.
fn pv_io(bar1: u64) {
    // 14. The grant table: version 1, its size, frame 0 in BAR1 and the
    // toolstack's reserved entries in it.
    let (rc, version) = gnttab::set_version(1);
    check("GNTTABOP_set_version", rc);
    let (rc, frames, max, status) = gnttab::query_size();
    check("GNTTABOP_query_size", rc);
    if status != 0 {
        fail("GNTTABOP_query_size status", i64::from(status));
    }
    let frame0 = bar1 + 0x1000;
    check(
        "XENMEM_add_to_physmap(grant_table)",
        gnttab::map_frame(0, frame0 >> 12),
    );
    let (flags, domid, frame) = gnttab::entry_v1(frame0, 1);
    println!(
        "flow: [14] grant table v",
        version,
        ", ",
        frames,
        " of ",
        max,
        " frames; frame 0 at GFN ",
        Hex(frame0 >> 12),
        ", ref 1 (XenStore): flags ",
        Hex(flags),
        " domain ",
        domid,
        " GFN ",
        Hex(frame)
    );

    // 15. XenStore: where we are, our domid, a transaction and a watch.
    let (pfn, port) = match xs::init() {
        Ok(v) => v,
        Err(rc) => fail("HVM_PARAM_STORE_PFN/EVTCHN", rc),
    };
    if u64::from(frame) != pfn {
        fail("grant ref 1 does not name the XenStore page", i64::from(frame));
    }
    let mut id = [0u8; 16];
    let n = xs_check("read domid", xs::read(0, b"domid", &mut id));
    let mut home = [0u8; 64];
    let len = xs_check(
        "GET_DOMAIN_PATH",
        xs::request(xs::GET_DOMAIN_PATH, 0, &[&id[..n], b"\0"], &mut home),
    );
    let home = &home[..len.saturating_sub(1)];
    let tx = xs_check("TRANSACTION_START", xs::start());
    let mut old = [0u8; 16];
    let had = xs::read(tx, b"data/flow", &mut old).is_ok();
    xs_check("write in the transaction", xs::write(tx, b"data/flow", b"1"));
    xs_check("TRANSACTION_END", xs::end(tx, true));
    let seen = xs::events();
    xs_check("WATCH", xs::watch(b"data/flow-watch", b"flow"));
    let initial = xs::wait_event(seen);
    let seen = xs::events();
    xs_check("write", xs::write(0, b"data/flow-watch", b"fired"));
    if !initial || !xs::wait_event(seen) {
        fail("no watch event from XenStore", 0);
    }
    println!(
        "flow: [15] XenStore at GFN ",
        Hex(pfn),
        " port ",
        port,
        ": home ",
        *home,
        ", domid ",
        *&id[..n],
        ", transaction ",
        tx,
        " committed",
        if had { " (over an old value)" } else { "" },
        ", watch fired on ",
        *xs::last_event().split(|&b| b == 0).next().unwrap_or(b"")
    );

    // 16. The PV console: from here on, text goes through its ring.
    match console::init() {
        Ok((pfn, port)) => {
            xen_guest_rt::set_console_sink(console::write);
            println!(
                "flow: [16] PV console at GFN ",
                Hex(pfn),
                " port ",
                port,
                ": this line came through its ring"
            );
        }
        Err(rc) => println!("flow: [16] no PV console (HVM_PARAM_CONSOLE_PFN: ", rc, ")"),
    }
}

/// What Linux's `drivers/xen/manage.c` does: offer poweroff and reboot,
/// watch `control/shutdown`, take a request in a transaction (writing ""
/// back to acknowledge it) and act on it.
fn await_shutdown() -> ! {
    xs_check("feature-poweroff", xs::write(0, b"control/feature-poweroff", b"1"));
    xs_check("feature-reboot", xs::write(0, b"control/feature-reboot", b"1"));
    let mut seen = xs::events();
    xs_check("WATCH control/shutdown", xs::watch(b"control/shutdown", b"shutdown"));
    println!("flow: command line says await-shutdown: watching control/shutdown");
    loop {
        if !xs::wait_event(seen) {
            continue;
        }
        seen = xs::events();
        let mut cmd = [0u8; 32];
        let tx = xs_check("TRANSACTION_START", xs::start());
        let n = match xs::read(tx, b"control/shutdown", &mut cmd) {
            Ok(n) => n,
            Err(_) => 0,
        };
        if n == 0 {
            let _ = xs::end(tx, false);
            continue;
        }
        xs_check("acknowledge", xs::write(tx, b"control/shutdown", b""));
        if xs::end(tx, true).is_err() {
            continue; // EAGAIN: read it again, as Linux does.
        }
        let cmd = &cmd[..n];
        println!("flow: control/shutdown says ", *cmd);
        match cmd {
            b"poweroff" | b"halt" => shutdown(SHUTDOWN_POWEROFF),
            b"reboot" => shutdown(SHUTDOWN_REBOOT),
            _ => println!("flow: unknown shutdown request ignored"),
        }
    }
}

fn main(start: Start) -> u32 {
    if start.vcpu != 0 {
        return ap(start.vcpu);
    }
    let line = cmdline(start.arg);
    println!("flow: PVH entry, hvm_start_info at ", Hex(start.arg));

    // 1. Xen in CPUID.
    let Some((base, max)) = xen_base() else {
        println!("flow: no Xen signature in CPUID leaves 0x40000000-0x4000ff00");
        return 1;
    };
    let v = cpuid(base + 1, 0).eax;
    println!(
        "flow: [1] CPUID: XenVMMXenVMM at ",
        Hex(base),
        " (max leaf ",
        Hex(max),
        "), Xen ",
        v >> 16,
        ".",
        v & 0xffff
    );

    // 2. The hypercall page, then the console through console_io.
    let msr = install_hypercall_page(base);
    println!(
        "flow: [2] hypercall page at ",
        Hex(xen::page_addr()),
        " through MSR ",
        Hex(msr),
        "; console moves to console_io"
    );
    xen_guest_rt::set_console_sink(xen_console);

    // 3. xen_version.
    let ver = check("xen_version", hypercall(nr::XEN_VERSION, [0, 0, 0, 0, 0]));
    let extra = xen::arg(0);
    check("XENVER_extraversion", hypercall(nr::XEN_VERSION, [1, extra, 0, 0, 0]));
    let mut buf = [0u8; 16];
    // SAFETY: the 16-byte string xen_version wrote into the scratch page,
    // copied before the page is reused.
    unsafe { core::ptr::copy_nonoverlapping(extra as *const u8, buf.as_mut_ptr(), 16) };
    let extra = &buf[..buf.iter().position(|&b| b == 0).unwrap_or(16)];
    put(0, 0, 0); // submap 0
    check("XENVER_get_features", hypercall(nr::XEN_VERSION, [6, xen::arg(0), 0, 0, 0]));
    println!(
        "flow: [3] xen_version: ",
        ver >> 16,
        ".",
        ver & 0xffff,
        *extra,
        ", features[0] ",
        Hex(get(0, 0) >> 32)
    );

    // 4. The platform PCI device: scan, magic, unplug.
    let Some((dev, bar1)) = find_platform() else {
        println!("FAILED: no Xen platform device on PCI bus 0");
        shutdown(SHUTDOWN_CRASH);
    };
    let magic = in16(0x10);
    let protocol = xen_guest_rt::in8(0x12);
    println!(
        "flow: [4] platform device 00:",
        dev / 10,
        dev % 10,
        ".0: BAR1 ",
        Hex(bar1),
        ", magic ",
        Hex(magic),
        ", protocol ",
        protocol
    );
    if magic != 0x49d2 {
        fail("platform magic", i64::from(magic));
    }
    out16(0x12, 3); // product: Linux
    out32(0x10, 1); // build number
    out16(0x10, 3); // unplug IDE disks and NICs
    println!("flow: [5] unplug requested: IDE disks and NICs (mask 0x3)");

    // 6. shared_info in the MMIO BAR.
    let gfn = bar1 >> 12;
    check("XENMEM_add_to_physmap(shared_info)", xen::place_shared_info(0, gfn));
    SHINFO.store(bar1, Ordering::SeqCst);
    println!("flow: [6] shared_info mapped at GFN ", Hex(gfn), " (platform BAR1)");

    // 7-8. vcpu_info and the per-vCPU upcall vector.
    setup_vcpu(0);
    println!("flow: [7] vcpu_info registered at ", Hex(vcpu_info_addr(0)));
    println!("flow: [8] per-vCPU upcall vector ", Hex(VECTOR), " (HVMOP_set_evtchn_upcall_vector)");

    // 9. An IPI to ourselves and VIRQ_TIMER.
    let ipi = bind_ipi(0);
    IPI_PORT[0].store(ipi, Ordering::SeqCst);
    put(0, 0, VIRQ_TIMER); // virq 0, vcpu 0
    check("EVTCHNOP_bind_virq", evtchn(0, evtchnop::BIND_VIRQ));
    let timer = get(0, 1) & 0xffff_ffff;
    println!("flow: [9] bound IPI port ", ipi, ", VIRQ_TIMER port ", timer);

    // 10. Send and take the upcall.
    send(0, ipi);
    wait_port(ipi);
    println!("flow: [10] sent port ", ipi, ", took the upcall (vector ", Hex(VECTOR), ")");

    // 11. A PV timer 1 ms ahead.
    let info = vcpu_info_addr(0);
    let now = pvclock(info);
    put(0, 0, now + 1_000_000);
    put(0, 1, 0);
    let before = upcall::count();
    check(
        "VCPUOP_set_singleshot_timer",
        hypercall(nr::VCPU_OP, [8, 0, xen::arg(0), 0, 0]),
    );
    wait_port(timer);
    let late = pvclock(info).saturating_sub(now + 1_000_000);
    println!(
        "flow: [11] PV timer fired on VIRQ_TIMER port ",
        timer,
        " (",
        upcall::count() - before,
        " upcall(s), ",
        late / 1000,
        " us after its deadline)"
    );

    // 12. The clocks.
    let (sec, nsec) = wall_clock();
    let (y, m, d) = date((sec / 86_400) as i64);
    let tod = (sec % 86_400) as u32;
    println!(
        "flow: [12] wall clock ",
        y,
        "-",
        m / 10,
        m % 10,
        "-",
        d / 10,
        d % 10,
        " ",
        tod / 36000,
        tod / 3600 % 10,
        ":",
        tod / 600 % 6,
        tod / 60 % 10,
        ":",
        tod % 60 / 10,
        tod % 10,
        " UTC (",
        sec,
        ".",
        nsec / 1_000_000,
        " s), pvclock system time ",
        pvclock(info) / 1000,
        " us"
    );

    // 13. The other vCPUs: INIT/SIPI, then an IPI round trip with each.
    let mut vcpus = 1;
    while vcpus < MAX_VCPUS {
        if hypercall(nr::VCPU_OP, [3, vcpus, 0, 0, 0]) < 0 {
            break;
        }
        vcpus += 1;
    }
    if vcpus > 1 {
        for v in 1..vcpus {
            xen_guest_rt::start_ap(v as u32);
        }
        STAGE.store(1, Ordering::SeqCst);
        for v in 1..vcpus {
            while IPI_PORT[v as usize].load(Ordering::SeqCst) == 0 {
                spin_loop();
            }
            send(0, IPI_PORT[v as usize].load(Ordering::SeqCst));
        }
        while AP_DONE.load(Ordering::SeqCst) < (vcpus - 1) as u32 {
            spin_loop();
        }
        wait_port(ipi);
        println!(
            "flow: [13] ",
            vcpus,
            " vCPUs: vCPU 0 sent an IPI to each other vCPU, each answered with one"
        );
    } else {
        println!("flow: [13] 1 vCPU: no IPIs between vCPUs");
    }

    pv_io(bar1);

    if has_word(line, b"await-shutdown") {
        await_shutdown();
    }
    if has_word(line, b"watchdog") {
        // SCHEDOP_watchdog {id 0 (a new one), timeout 1 s}, never fed.
        put(0, 0, 1 << 32);
        let id = hypercall(nr::SCHED_OP, [6, xen::arg(0), 0, 0, 0]);
        println!("flow: command line says watchdog: armed 1 s watchdog ", id, ", spinning");
        // SAFETY: interrupts off; the loop below never leaves the guest.
        unsafe { core::arch::asm!("cli") };
        loop {
            core::hint::spin_loop();
        }
    }
    if has_word(line, b"hang") {
        println!("flow: command line says hang: never shutting down");
        loop {
            // SAFETY: halting with interrupts off parks this vCPU.
            unsafe { core::arch::asm!("cli", "hlt") };
        }
    }
    if has_word(line, b"crash") {
        println!("flow: command line says crash: SCHEDOP_shutdown(crash)");
        shutdown(SHUTDOWN_CRASH);
    }
    println!("flow: [17] done: SCHEDOP_shutdown(poweroff)");
    shutdown(SHUTDOWN_POWEROFF)
}

entry!(main);
