// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Event-channel upcalls through `HVM_PARAM_CALLBACK_IRQ` (`xen-abi.md`
//! §3.7, §4.1), as guests without a per-vCPU upcall vector take them. The
//! test's argument picks the part:
//!
//! * 1, **global callback vector** (type 2, vector 0xf3): the handler clears
//!   `evtchn_upcall_pending`, consumes the 2-level bits and, like Linux's
//!   `xen_hvm_callback_vector`, never EOIs. Every send must still arrive,
//!   and a lower-priority self-IPI (vector 0x40) must still be delivered:
//!   on Xen the vector never enters the LAPIC's in-service register. The
//!   guest reads the ISR (0xfee00100..0xfee00170) to show that no bit is
//!   left set, and reports what it saw before its first exit to the VMM
//!   after an upcall (the window in which a user-space VMM cannot yet
//!   have cleared the ISR bit its MSI set).
//! * 2, **global vector raised from another vCPU while the previous
//!   upcall's in-service bit is still set** (two vCPUs): vCPU 1 sends on
//!   vCPU 0's IPI port twice while vCPU 0 runs without exits; the first
//!   upcall, an MSI on the user-space path, leaves its in-service bit set
//!   (no EOI), and the second must still arrive without vCPU 0 exiting,
//!   as on Xen (the VMM kicks vCPU 0 out to clear the bit).
//! * 3, **GSI** (type 0, GSI 20 = IOAPIC pin 20, level, active high, fixed
//!   to APIC 0, vector 0x60): the handler clears `evtchn_upcall_pending`
//!   and then EOIs; the line must be dropped so that each send gives
//!   exactly one interrupt (no storm), and a later send raises it again.
//!   While `evtchn_upcall_pending` stays set, each EOI re-delivers (a level
//!   line): the handler leaves it set twice, so one send gives exactly
//!   three interrupts. That is Xen's behaviour: it checks vCPU 0's
//!   `evtchn_upcall_pending` on every VM exit (the EOI is one) before the
//!   virtual IOAPIC looks at the line (`hvm_maybe_deassert_evtchn_irq`).
//! * 4, **PCI INTx** (type 1, device 3 INTA#): the same as 3 through the
//!   GSI the VMM routes that pin to (the host test sets it with
//!   `XenDomainBuilder::pci_intx_routing`; here GSI 21, vector 0x61).
//!
//! Bit 4 of the argument (0x13, 0x14): the line handler makes an exit the
//! VMM handles (`xen_version`) between clearing `evtchn_upcall_pending` and
//! its EOI. That checks a user-space VMM's "drop the line at vCPU 0's next
//! exit" by itself; without it (as Linux does) the VMM must see the EOI.
//!
//! Every part first takes a control interrupt (a self-IPI on vector 0x50)
//! and reports whether its own ISR bit is visible in its handler
//! (`isr_observable`): where it is not, the ISR checks prove nothing.
//!
//! A storm guard masks the IOAPIC pin after `STORM_LIMIT` interrupts so
//! that a broken VMM still lets the run end and report. Prints
//! `v <name> <value>` lines.

#![no_std]
#![no_main]

use core::arch::asm;
use core::hint::spin_loop;
use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

use xen_guest_rt::xen::{self, evtchn, evtchnop, hypercall, install_hypercall_page, nr, upcall, xen_base};
use xen_guest_rt::{Hex, Start, entry, println, rdtsc, set_gate};

const DOMID_SELF: u64 = 0x7ff0;
const SHINFO: u64 = 0x1f00 << 12;
/// The global callback vector (Linux's HYPERVISOR_CALLBACK_VECTOR).
const VECTOR: u8 = 0xf3;
/// A lower-priority vector for the LAPIC self-IPI.
const LOW: u8 = 0x40;
/// The ISR control's vector.
const CONTROL: u8 = 0x50;
/// GSI part: pin and vector.
const GSI: u32 = 20;
const GSI_VECTOR: u8 = 0x60;
/// INTx part: the GSI the host routes device 3 INTA# to, and its vector.
const INTX_GSI: u32 = 21;
const INTX_VECTOR: u8 = 0x61;
const INTX_DEVICE: u64 = 3;
/// Interrupts after which the handler masks the IOAPIC pin.
const STORM_LIMIT: u32 = 200;

const LAPIC: u64 = 0xfee0_0000;
const IOAPIC: u64 = 0xfec0_0000;
const HVM_PARAM_CALLBACK_IRQ: u64 = 0;

/// Global-vector upcalls taken by vCPU 0, and by any other vCPU.
static VEC_HITS: AtomicU32 = AtomicU32::new(0);
static VEC_OTHER: AtomicU32 = AtomicU32::new(0);
/// Whether the callback vector's ISR bit was set inside the last upcall.
static VEC_ISR_IN_HANDLER: AtomicU32 = AtomicU32::new(0);
/// Self-IPIs taken.
static LOW_HITS: AtomicU32 = AtomicU32::new(0);
/// The control: whether an ordinary fixed interrupt (vector `CONTROL`)
/// sees its own ISR bit before its EOI. Some KVM backends (the development
/// machines' PVM) never show an in-service bit, which makes the ISR checks
/// below vacuous there; the host test says so.
static CONTROL_ISR: AtomicU32 = AtomicU32::new(u32::MAX);
/// Line parts: the handler makes an exit the VMM handles between clearing
/// `evtchn_upcall_pending` and its EOI.
static EXIT_IN_HANDLER: AtomicU8 = AtomicU8::new(0);
/// GSI / INTx interrupts taken, and those that found no upcall pending.
static LINE_HITS: AtomicU32 = AtomicU32::new(0);
static LINE_SPURIOUS: AtomicU32 = AtomicU32::new(0);
/// How many more line interrupts must leave `evtchn_upcall_pending` set.
static KEEP_PENDING: AtomicU32 = AtomicU32::new(0);
/// The IOAPIC pin the line handler masks on a storm, and whether it did.
static LINE_PIN: AtomicU32 = AtomicU32::new(0);
static STORM_MASKED: AtomicU8 = AtomicU8::new(0);
/// Ports (< 64) consumed by the handlers.
static SEEN: AtomicU64 = AtomicU64::new(0);
/// Two-vCPU part: progress, vCPU 0's port, vCPU 1's send result.
static STAGE: AtomicU32 = AtomicU32::new(0);
static PORT0: AtomicU64 = AtomicU64::new(0);
static AP_SEND: AtomicU64 = AtomicU64::new(u64::MAX);

xen_guest_rt::irq_entry!("via_vector_entry", on_vector);
xen_guest_rt::irq_entry!("via_low_entry", on_low);
xen_guest_rt::irq_entry!("via_line_entry", on_line);
xen_guest_rt::irq_entry!("via_control_entry", on_control);

unsafe extern "C" {
    fn via_vector_entry();
    fn via_low_entry();
    fn via_line_entry();
    fn via_control_entry();
}

fn lapic_read(off: u64) -> u32 {
    // SAFETY: a local APIC register, identity-mapped.
    unsafe { read_volatile((LAPIC + off) as *const u32) }
}

fn lapic_write(off: u64, v: u32) {
    // SAFETY: a local APIC register, identity-mapped.
    unsafe { write_volatile((LAPIC + off) as *mut u32, v) }
}

fn eoi() {
    lapic_write(0xb0, 0);
}

/// The eight in-service (`base` 0x100) or request (0x200) words.
fn apic_words(base: u64) -> [u32; 8] {
    core::array::from_fn(|i| lapic_read(base + 0x10 * i as u64))
}

fn has(words: &[u32; 8], vector: u8) -> bool {
    words[usize::from(vector / 32)] & (1 << (vector % 32)) != 0
}

fn any(words: &[u32; 8]) -> bool {
    words.iter().any(|&w| w != 0)
}

/// Fixed, edge, to self (destination shorthand 01).
fn self_ipi(vector: u8) {
    lapic_write(0x310, 0);
    lapic_write(0x300, 0x4_4000 | u32::from(vector));
}

fn ioapic_read(reg: u32) -> u32 {
    // SAFETY: IOREGSEL / IOWIN of the in-kernel IOAPIC, identity-mapped.
    unsafe {
        write_volatile(IOAPIC as *mut u32, reg);
        read_volatile((IOAPIC + 0x10) as *const u32)
    }
}

fn ioapic_write(reg: u32, v: u32) {
    // SAFETY: as above.
    unsafe {
        write_volatile(IOAPIC as *mut u32, reg);
        write_volatile((IOAPIC + 0x10) as *mut u32, v);
    }
}

/// Redirection entry of `pin`: level, active high, fixed, physical to
/// APIC 0, `vector`, unmasked.
fn route_pin(pin: u32, vector: u8) {
    ioapic_write(0x11 + 2 * pin, 0);
    ioapic_write(0x10 + 2 * pin, 1 << 15 | u32::from(vector));
}

fn this_vcpu() -> u64 {
    u64::from(lapic_read(0x20) >> 24)
}

fn byte(addr: u64) -> &'static AtomicU8 {
    // SAFETY: guest RAM (shared_info) that the VMM changes only atomically.
    unsafe { &*(addr as *const AtomicU8) }
}

/// vCPU `v`'s `evtchn_upcall_pending` (vcpu_info in shared_info).
fn upcall_pending(v: u64) -> &'static AtomicU8 {
    byte(SHINFO + 64 * v)
}

/// What Linux's `xen_evtchn_do_upcall` does for the 2-level ABI: clear
/// `evtchn_upcall_pending`, swap the selector to 0, take `pending & ~mask`.
fn consume(v: u64) {
    upcall_pending(v).store(0, Ordering::SeqCst);
    upcall::two_level_scan(SHINFO, SHINFO + 64 * v, |_| true, |port| {
        if port < 64 {
            SEEN.fetch_or(1 << port, Ordering::SeqCst);
        }
    });
}

/// The global callback vector: no EOI, as in Linux.
extern "C" fn on_vector() {
    let v = this_vcpu();
    if v != 0 {
        VEC_OTHER.fetch_add(1, Ordering::SeqCst);
    } else {
        VEC_HITS.fetch_add(1, Ordering::SeqCst);
    }
    VEC_ISR_IN_HANDLER.store(u32::from(has(&apic_words(0x100), VECTOR)), Ordering::SeqCst);
    consume(v);
}

/// The self-IPI: an ordinary LAPIC interrupt, EOI'd.
extern "C" fn on_low() {
    LOW_HITS.fetch_add(1, Ordering::SeqCst);
    eoi();
}

/// The ISR control interrupt.
extern "C" fn on_control() {
    CONTROL_ISR.store(u32::from(has(&apic_words(0x100), CONTROL)), Ordering::SeqCst);
    eoi();
}

/// The GSI / INTx line: clear `evtchn_upcall_pending` (unless told to keep
/// it), then EOI, as Linux's platform-PCI interrupt does.
extern "C" fn on_line() {
    let hits = LINE_HITS.fetch_add(1, Ordering::SeqCst) + 1;
    if upcall_pending(0).load(Ordering::SeqCst) == 0 {
        LINE_SPURIOUS.fetch_add(1, Ordering::SeqCst);
    }
    let keep = KEEP_PENDING.load(Ordering::SeqCst);
    if keep > 0 {
        KEEP_PENDING.store(keep - 1, Ordering::SeqCst);
    } else {
        consume(0);
    }
    if EXIT_IN_HANDLER.load(Ordering::SeqCst) != 0 {
        vmm_exit();
    }
    if hits >= STORM_LIMIT && STORM_MASKED.swap(1, Ordering::SeqCst) == 0 {
        let pin = LINE_PIN.load(Ordering::SeqCst);
        ioapic_write(0x10 + 2 * pin, ioapic_read(0x10 + 2 * pin) | 1 << 16);
    }
    eoi();
}

fn arg(vcpu: u64) -> u64 {
    xen::arg(vcpu)
}

fn send(vcpu: u64, port: u64) -> i64 {
    xen::put(vcpu, 0, port);
    evtchn(vcpu, evtchnop::SEND)
}

/// An exit the VMM sees (and does its per-exit work on):
/// `xen_version(XENVER_pagesize)`, which returns 4096. Not
/// `XENVER_version`: KVM answers that one itself when it has the
/// `EVTCHN_SEND` fast path, without an exit to user space.
fn vmm_exit() -> i64 {
    hypercall(nr::XEN_VERSION, [7, 0, 0, 0, 0])
}

fn set_callback(via: u64) -> i64 {
    xen::put(0, 0, DOMID_SELF | HVM_PARAM_CALLBACK_IRQ << 32);
    xen::put(0, 1, via);
    hypercall(nr::HVM_OP, [0, arg(0), 0, 0, 0])
}

fn bind_ipi(vcpu: u64) -> (i64, u64) {
    xen::put(vcpu, 0, vcpu);
    let r = evtchn(vcpu, evtchnop::BIND_IPI);
    (r, xen::get(vcpu, 0) >> 32)
}

/// Spins with interrupts on, without exits, for at least `iters`
/// iterations and 10M TSC cycles (a few ms natively, enough for the
/// emulator too), or until `until()`.
fn spin(iters: u32, until: impl Fn() -> bool) -> bool {
    let t0 = rdtsc();
    let mut i = 0u32;
    loop {
        if until() {
            return true;
        }
        if i >= iters && rdtsc().wrapping_sub(t0) >= 10_000_000 {
            return false;
        }
        i = i.wrapping_add(1);
        spin_loop();
    }
}

/// Waits for `c` to reach `n`.
fn wait(c: &AtomicU32, n: u32) -> bool {
    spin(200_000, || c.load(Ordering::SeqCst) >= n)
}

/// Lets late (extra) interrupts come in.
fn settle() {
    spin(20_000, || false);
}

fn sti() {
    // SAFETY: the IDT routes every vector this guest enables.
    unsafe { asm!("sti", options(nomem, nostack)) }
}

fn cli() {
    // SAFETY: interrupts off.
    unsafe { asm!("cli", options(nomem, nostack)) }
}

fn setup() -> bool {
    let Some((base, _)) = xen_base() else {
        println!("v error no_xen");
        return false;
    };
    install_hypercall_page(base);
    println!("v add_shinfo ", xen::place_shared_info(0, SHINFO >> 12));
    // LAPIC software enable, spurious vector 0xff.
    lapic_write(0xf0, 0x1ff);
    set_gate(VECTOR, via_vector_entry as usize as u64);
    set_gate(LOW, via_low_entry as usize as u64);
    set_gate(GSI_VECTOR, via_line_entry as usize as u64);
    set_gate(INTX_VECTOR, via_line_entry as usize as u64);
    set_gate(CONTROL, via_control_entry as usize as u64);
    // The control: a self-IPI taken with interrupts on, its ISR bit read
    // in its handler before the EOI.
    self_ipi(CONTROL);
    sti();
    spin(20_000, || CONTROL_ISR.load(Ordering::SeqCst) != u32::MAX);
    cli();
    println!("v isr_observable ", CONTROL_ISR.load(Ordering::SeqCst));
    true
}

fn print_words(name: &str, w: &[u32; 8]) {
    println!(
        "v ", name, " ", any(w), " ", Hex(w[7]), ":", Hex(w[6]), ":", Hex(w[5]), ":", Hex(w[4]), ":",
        Hex(w[3]), ":", Hex(w[2]), ":", Hex(w[1]), ":", Hex(w[0])
    );
}

/// Part 1: the global callback vector on one vCPU.
fn global_vector() -> u32 {
    println!("v callback ", set_callback(2 << 56 | u64::from(VECTOR)));
    let (r, port) = bind_ipi(0);
    println!("v bind_ipi ", r, " port ", port);
    sti();

    // First upcall; then, before any exit the VMM sees, the in-service
    // register and a lower-priority self-IPI.
    let r = send(0, port);
    let took = wait(&VEC_HITS, 1);
    let isr_window = apic_words(0x100);
    self_ipi(LOW);
    spin(20_000, || LOW_HITS.load(Ordering::SeqCst) >= 1);
    let low_window = LOW_HITS.load(Ordering::SeqCst);
    // An exit the VMM handles; afterwards nothing may be left in service
    // and the self-IPI must have been taken.
    let rx = vmm_exit();
    wait(&LOW_HITS, 1);
    settle();
    let low_after = LOW_HITS.load(Ordering::SeqCst);
    let isr_after = apic_words(0x100);
    let irr_after = apic_words(0x200);
    println!("v send1 ", r, " taken ", took, " count ", VEC_HITS.load(Ordering::SeqCst));
    println!("v isr_bit_in_handler ", VEC_ISR_IN_HANDLER.load(Ordering::SeqCst));
    println!("v window_isr_vector_bit ", has(&isr_window, VECTOR));
    println!("v window_low_taken ", low_window);
    println!("v exit ", rx);
    println!("v low_after_exit ", low_after);
    print_words("isr_after_exit", &isr_after);
    print_words("irr_after_exit", &irr_after);
    println!("v seen1 ", SEEN.swap(0, Ordering::SeqCst) == 1 << port);
    println!("v pending1 ", upcall_pending(0).load(Ordering::SeqCst));

    // Second send: the vector arrives again.
    let r = send(0, port);
    let took = wait(&VEC_HITS, 2);
    settle();
    println!("v send2 ", r, " taken ", took, " count ", VEC_HITS.load(Ordering::SeqCst));
    println!("v seen2 ", SEEN.swap(0, Ordering::SeqCst) == 1 << port);
    // And a lower-priority interrupt after it.
    vmm_exit();
    self_ipi(LOW);
    let took = wait(&LOW_HITS, 2);
    settle();
    println!("v low2 ", took, " count ", LOW_HITS.load(Ordering::SeqCst));

    // Five more sends: exactly one upcall each.
    let mut ok = 0;
    for i in 0..5u32 {
        send(0, port);
        if wait(&VEC_HITS, 3 + i) {
            ok += 1;
        }
        settle();
    }
    println!("v burst ", ok, " count ", VEC_HITS.load(Ordering::SeqCst), " other ", VEC_OTHER.load(Ordering::SeqCst));
    vmm_exit();
    settle();
    print_words("isr_final", &apic_words(0x100));
    println!("v pending_final ", upcall_pending(0).load(Ordering::SeqCst));
    0
}

/// vCPU 1 in part 2: sends on vCPU 0's port at stages 1 and 3, and says
/// so with stages 2 and 4.
fn ap() -> u32 {
    let mut results = 0;
    for stage in [1, 3] {
        while STAGE.load(Ordering::SeqCst) < stage {
            spin_loop();
        }
        results |= send(1, PORT0.load(Ordering::SeqCst)) as u64;
        STAGE.store(stage + 1, Ordering::SeqCst);
    }
    AP_SEND.store(results, Ordering::SeqCst);
    0
}

/// Part 2: upcalls raised from vCPU 1 while vCPU 0 runs without exits.
/// The first one (an MSI on a user-space path) leaves its in-service bit
/// set, as the handler never EOIs; the second must arrive all the same.
fn global_vector_cross() -> u32 {
    println!("v callback ", set_callback(2 << 56 | u64::from(VECTOR)));
    let (r, port) = bind_ipi(0);
    println!("v bind_ipi ", r, " port ", port);
    PORT0.store(port, Ordering::SeqCst);
    sti();
    let r = send(0, port);
    let took = wait(&VEC_HITS, 1);
    println!("v send1 ", r, " taken ", took);
    // vCPU 1 sends while this vCPU runs without exits (console output is
    // not seen by the VMM's per-exit hook, but avoid it anyway).
    STAGE.store(1, Ordering::SeqCst);
    while STAGE.load(Ordering::SeqCst) < 2 {
        spin_loop();
    }
    let first = wait(&VEC_HITS, 2);
    STAGE.store(3, Ordering::SeqCst);
    while STAGE.load(Ordering::SeqCst) < 4 {
        spin_loop();
    }
    let before = first && wait(&VEC_HITS, 3);
    // Exits the VMM handles: the upcall must come after them at the latest.
    let mut exits = 0;
    let mut after = before;
    while !after && exits < 20 {
        vmm_exit();
        exits += 1;
        after = wait(&VEC_HITS, 3);
    }
    settle();
    let isr = apic_words(0x100);
    println!("v ap_send ", AP_SEND.load(Ordering::SeqCst) as i64);
    println!("v taken_before_exit ", before);
    println!("v taken_after_exits ", after, " exits ", exits);
    println!("v count ", VEC_HITS.load(Ordering::SeqCst), " other ", VEC_OTHER.load(Ordering::SeqCst));
    println!("v seen ", SEEN.swap(0, Ordering::SeqCst) == 1 << port);
    vmm_exit();
    settle();
    print_words("isr_final", &apic_words(0x100));
    print_words("isr_at_check", &isr);
    0
}

/// Parts 3 and 4: a level line through the IOAPIC.
fn line(via: u64, pin: u32, vector: u8) -> u32 {
    println!("v ioapic_version ", Hex(ioapic_read(1)));
    LINE_PIN.store(pin, Ordering::SeqCst);
    route_pin(pin, vector);
    println!("v redir ", Hex(ioapic_read(0x10 + 2 * pin)));
    println!("v callback ", set_callback(via));
    let (r, port) = bind_ipi(0);
    println!("v bind_ipi ", r, " port ", port);
    sti();

    // One send, one interrupt; nothing more before or after an exit.
    let r = send(0, port);
    let took = wait(&LINE_HITS, 1);
    settle();
    let before_exit = LINE_HITS.load(Ordering::SeqCst);
    vmm_exit();
    settle();
    println!("v send1 ", r, " taken ", took, " count ", before_exit);
    println!("v count1_after_exit ", LINE_HITS.load(Ordering::SeqCst));
    println!("v seen1 ", SEEN.swap(0, Ordering::SeqCst) == 1 << port);

    // upcall_pending was cleared: the next send raises the line again.
    let r = send(0, port);
    let took = wait(&LINE_HITS, before_exit + 1);
    settle();
    vmm_exit();
    settle();
    println!("v send2 ", r, " taken ", took, " count ", LINE_HITS.load(Ordering::SeqCst));
    println!("v seen2 ", SEEN.swap(0, Ordering::SeqCst) == 1 << port);

    // Level: the handler EOIs twice with evtchn_upcall_pending still set;
    // each EOI re-delivers, the third interrupt clears it and ends it.
    let start = LINE_HITS.load(Ordering::SeqCst);
    KEEP_PENDING.store(2, Ordering::SeqCst);
    let r = send(0, port);
    let took = wait(&LINE_HITS, start + 3);
    settle();
    vmm_exit();
    settle();
    println!(
        "v level ", r, " taken ", took, " delivered ", LINE_HITS.load(Ordering::SeqCst) - start,
        " keep_left ", KEEP_PENDING.load(Ordering::SeqCst)
    );
    println!("v seen3 ", SEEN.swap(0, Ordering::SeqCst) == 1 << port);

    cli();
    let redir = ioapic_read(0x10 + 2 * pin);
    sti();
    println!("v spurious ", LINE_SPURIOUS.load(Ordering::SeqCst));
    println!("v storm_masked ", STORM_MASKED.load(Ordering::SeqCst));
    println!("v total ", LINE_HITS.load(Ordering::SeqCst));
    println!("v remote_irr ", redir >> 14 & 1);
    println!("v pending_final ", upcall_pending(0).load(Ordering::SeqCst));
    print_words("isr_final", &apic_words(0x100));
    0
}

fn main(start: Start) -> u32 {
    if start.vcpu != 0 {
        return ap();
    }
    if !setup() {
        return 1;
    }
    // Bit 4 of the argument: the line handler exits before its EOI.
    EXIT_IN_HANDLER.store(u8::from(start.arg & 0x10 != 0), Ordering::SeqCst);
    match start.arg & 0xf {
        1 => global_vector(),
        2 => global_vector_cross(),
        3 => line(u64::from(GSI), GSI, GSI_VECTOR),
        4 => line(1 << 56 | INTX_DEVICE << 11, INTX_GSI, INTX_VECTOR),
        _ => {
            println!("v error bad_arg");
            1
        }
    }
}

entry!(main);
