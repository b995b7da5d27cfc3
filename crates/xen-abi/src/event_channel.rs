// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `event_channel_op` hypercall (32) definitions, mirroring
//! `xen/include/public/event_channel.h`.
//!
//! Follows interface version 0x00041300 (Xen 4.23-unstable), `xen-abi.md`
//! §3.8 (operations) and §4 (2-level and FIFO delivery). Every structure has
//! the same layout in both guest modes, so there are no compat variants.
//!
//! The FIFO ABI's per-vCPU control block is [`EvtchnFifoControlBlock`]; its
//! 32-bit event words are decoded by [`EvtchnFifoWord`].

use bitflags::bitflags;

use crate::xen::DomId;

/// An event-channel port number (`evtchn_port_t`).
pub type EvtchnPort = u32;

abi_enum! {
    /// `event_channel_op` commands (`EVTCHNOP_*`).
    pub enum EvtchnOp: u32, "event_channel_op command" {
        /// Connect to an unbound port of another domain ([`EvtchnBindInterdomain`]).
        BindInterdomain = 0 => "EVTCHNOP_bind_interdomain",
        /// Bind a VIRQ ([`EvtchnBindVirq`]).
        BindVirq = 1 => "EVTCHNOP_bind_virq",
        /// Bind a PIRQ ([`EvtchnBindPirq`]).
        BindPirq = 2 => "EVTCHNOP_bind_pirq",
        /// Close a port ([`EvtchnClose`]).
        Close = 3 => "EVTCHNOP_close",
        /// Notify a port ([`EvtchnSend`]).
        Send = 4 => "EVTCHNOP_send",
        /// Query a port ([`EvtchnStatus`]).
        Status = 5 => "EVTCHNOP_status",
        /// Allocate an unbound port ([`EvtchnAllocUnbound`]).
        AllocUnbound = 6 => "EVTCHNOP_alloc_unbound",
        /// Bind an IPI port ([`EvtchnBindIpi`]).
        BindIpi = 7 => "EVTCHNOP_bind_ipi",
        /// Change a port's notify vCPU ([`EvtchnBindVcpu`]).
        BindVcpu = 8 => "EVTCHNOP_bind_vcpu",
        /// Unmask a port ([`EvtchnUnmask`]).
        Unmask = 9 => "EVTCHNOP_unmask",
        /// Close all ports of a domain ([`EvtchnReset`]).
        Reset = 10 => "EVTCHNOP_reset",
        /// Switch to FIFO and register a control block ([`EvtchnInitControl`]).
        InitControl = 11 => "EVTCHNOP_init_control",
        /// Add an event-array page ([`EvtchnExpandArray`]).
        ExpandArray = 12 => "EVTCHNOP_expand_array",
        /// Set a port's FIFO priority ([`EvtchnSetPriority`]).
        SetPriority = 13 => "EVTCHNOP_set_priority",
        /// Xen-internal continuation of a preempted reset ([`EvtchnReset`]).
        ResetCont = 14 => "EVTCHNOP_reset_cont",
    }
}

abi_enum! {
    /// Port states reported by `EVTCHNOP_status` (`EVTCHNSTAT_*`).
    pub enum EvtchnStat: u32, "event channel status" {
        /// Not in use.
        Closed = 0 => "EVTCHNSTAT_closed",
        /// Allocated, waiting for a remote end.
        Unbound = 1 => "EVTCHNSTAT_unbound",
        /// Connected to a port of another (or the same) domain.
        Interdomain = 2 => "EVTCHNSTAT_interdomain",
        /// Bound to a physical IRQ.
        Pirq = 3 => "EVTCHNSTAT_pirq",
        /// Bound to a virtual IRQ.
        Virq = 4 => "EVTCHNSTAT_virq",
        /// Bound as an IPI.
        Ipi = 5 => "EVTCHNSTAT_ipi",
    }
}

/// Number of ports of the 2-level ABI with 64-bit words (x86_64 shared info).
pub const EVTCHN_2L_NR_CHANNELS: u32 = 64 * 64;
/// Number of ports of the 2-level ABI with 32-bit words (x86_32 shared info).
pub const EVTCHN_2L_NR_CHANNELS_COMPAT: u32 = 32 * 32;

/// `evtchn_bind_pirq.flags`: the PIRQ may be shared (`BIND_PIRQ__WILL_SHARE`).
pub const BIND_PIRQ_WILL_SHARE: u32 = 1;

// --- operation arguments ------------------------------------------------------------

/// `struct evtchn_bind_interdomain` (12 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindInterdomain {
    /// IN: domain owning the unbound remote port.
    pub remote_dom: DomId,
    /// Padding.
    pub pad: u16,
    /// IN: the remote unbound port.
    pub remote_port: EvtchnPort,
    /// OUT: the new local port.
    pub local_port: EvtchnPort,
}
abi_layout!(EvtchnBindInterdomain, 12, {
    remote_dom => 0, pad => 2, remote_port => 4, local_port => 8,
});

/// `struct evtchn_bind_virq` (12 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindVirq {
    /// IN: raw [`Virq`](crate::xen::Virq).
    pub virq: u32,
    /// IN: vCPU to bind on (0 for non-per-vCPU VIRQs).
    pub vcpu: u32,
    /// OUT: the new port.
    pub port: EvtchnPort,
}
abi_layout!(EvtchnBindVirq, 12, { virq => 0, vcpu => 4, port => 8 });

bitflags! {
    /// `evtchn_bind_pirq.flags`.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
    #[cfg_attr(feature = "serde", serde(transparent))]
    pub struct BindPirqFlags: u32 {
        /// The PIRQ may be shared with other domains (`BIND_PIRQ__WILL_SHARE`).
        const WILL_SHARE = BIND_PIRQ_WILL_SHARE;
    }
}

/// `struct evtchn_bind_pirq` (12 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindPirq {
    /// IN: the PIRQ.
    pub pirq: u32,
    /// IN: raw [`BindPirqFlags`].
    pub flags: u32,
    /// OUT: the new port.
    pub port: EvtchnPort,
}
abi_layout!(EvtchnBindPirq, 12, { pirq => 0, flags => 4, port => 8 });

impl EvtchnBindPirq {
    /// Returns the typed flags (unknown bits are dropped).
    pub const fn bind_flags(&self) -> BindPirqFlags {
        BindPirqFlags::from_bits_truncate(self.flags)
    }
}

/// `struct evtchn_close` (4 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnClose {
    /// IN: port to close.
    pub port: EvtchnPort,
}
abi_layout!(EvtchnClose, 4, { port => 0 });

/// `struct evtchn_send` (4 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnSend {
    /// IN: port to notify.
    pub port: EvtchnPort,
}
abi_layout!(EvtchnSend, 4, { port => 0 });

/// `struct evtchn_status` (24 bytes).
///
/// The C structure ends in a union whose meaning depends on `status`; it is
/// kept here as raw bytes (`u`) and read or written through
/// [`EvtchnStatus::detail`] and [`EvtchnStatus::set_detail`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnStatus {
    /// IN: domain to query.
    pub dom: DomId,
    /// Padding.
    pub pad: u16,
    /// IN: port to query.
    pub port: EvtchnPort,
    /// OUT: raw [`EvtchnStat`].
    pub status: u32,
    /// OUT: notify vCPU.
    pub vcpu: u32,
    /// OUT: raw union (`unbound`, `interdomain`, `pirq`, `virq`).
    pub u: [u8; 8],
}
abi_layout!(EvtchnStatus, 24, {
    dom => 0, pad => 2, port => 4, status => 8, vcpu => 12, u => 16,
});

/// The decoded state-specific part of [`EvtchnStatus`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum EvtchnStatusDetail {
    /// The port is closed.
    Closed,
    /// Unbound; `dom` is the domain allowed to bind to it.
    Unbound {
        /// Remote domain allowed to connect.
        dom: DomId,
    },
    /// Connected to `port` of domain `dom`.
    Interdomain {
        /// Remote domain.
        dom: DomId,
        /// Remote port.
        port: EvtchnPort,
    },
    /// Bound to a physical IRQ.
    Pirq(u32),
    /// Bound to a virtual IRQ.
    Virq(u32),
    /// Bound as an IPI.
    Ipi,
}

impl EvtchnStatusDetail {
    /// Returns the [`EvtchnStat`] that goes with this detail.
    pub const fn stat(&self) -> EvtchnStat {
        match self {
            EvtchnStatusDetail::Closed => EvtchnStat::Closed,
            EvtchnStatusDetail::Unbound { .. } => EvtchnStat::Unbound,
            EvtchnStatusDetail::Interdomain { .. } => EvtchnStat::Interdomain,
            EvtchnStatusDetail::Pirq(_) => EvtchnStat::Pirq,
            EvtchnStatusDetail::Virq(_) => EvtchnStat::Virq,
            EvtchnStatusDetail::Ipi => EvtchnStat::Ipi,
        }
    }
}

impl EvtchnStatus {
    fn union_u16(&self, at: usize) -> u16 {
        u16::from_ne_bytes([self.u[at], self.u[at + 1]])
    }

    fn union_u32(&self, at: usize) -> u32 {
        u32::from_ne_bytes([self.u[at], self.u[at + 1], self.u[at + 2], self.u[at + 3]])
    }

    /// Decodes `status` and the union.
    pub fn detail(&self) -> crate::Result<EvtchnStatusDetail> {
        Ok(match EvtchnStat::try_from(self.status)? {
            EvtchnStat::Closed => EvtchnStatusDetail::Closed,
            EvtchnStat::Unbound => EvtchnStatusDetail::Unbound {
                dom: self.union_u16(0),
            },
            EvtchnStat::Interdomain => EvtchnStatusDetail::Interdomain {
                dom: self.union_u16(0),
                port: self.union_u32(4),
            },
            EvtchnStat::Pirq => EvtchnStatusDetail::Pirq(self.union_u32(0)),
            EvtchnStat::Virq => EvtchnStatusDetail::Virq(self.union_u32(0)),
            EvtchnStat::Ipi => EvtchnStatusDetail::Ipi,
        })
    }

    /// Stores `status` and the union (unused union bytes are zeroed).
    pub fn set_detail(&mut self, detail: EvtchnStatusDetail) {
        self.status = detail.stat().raw();
        self.u = [0; 8];
        match detail {
            EvtchnStatusDetail::Closed | EvtchnStatusDetail::Ipi => {}
            EvtchnStatusDetail::Unbound { dom } => {
                self.u[0..2].copy_from_slice(&dom.to_ne_bytes());
            }
            EvtchnStatusDetail::Interdomain { dom, port } => {
                self.u[0..2].copy_from_slice(&dom.to_ne_bytes());
                self.u[4..8].copy_from_slice(&port.to_ne_bytes());
            }
            EvtchnStatusDetail::Pirq(v) | EvtchnStatusDetail::Virq(v) => {
                self.u[0..4].copy_from_slice(&v.to_ne_bytes());
            }
        }
    }
}

/// `struct evtchn_alloc_unbound` (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnAllocUnbound {
    /// IN: domain to allocate in (`DOMID_SELF` for unprivileged callers).
    pub dom: DomId,
    /// IN: domain allowed to connect (may be `DOMID_SELF`).
    pub remote_dom: DomId,
    /// OUT: the new port.
    pub port: EvtchnPort,
}
abi_layout!(EvtchnAllocUnbound, 8, { dom => 0, remote_dom => 2, port => 4 });

/// `struct evtchn_bind_ipi` (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindIpi {
    /// IN: vCPU the port notifies.
    pub vcpu: u32,
    /// OUT: the new port.
    pub port: EvtchnPort,
}
abi_layout!(EvtchnBindIpi, 8, { vcpu => 0, port => 4 });

/// `struct evtchn_bind_vcpu` (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindVcpu {
    /// IN: port to rebind.
    pub port: EvtchnPort,
    /// IN: new notify vCPU.
    pub vcpu: u32,
}
abi_layout!(EvtchnBindVcpu, 8, { port => 0, vcpu => 4 });

/// `struct evtchn_unmask` (4 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnUnmask {
    /// IN: port to unmask.
    pub port: EvtchnPort,
}
abi_layout!(EvtchnUnmask, 4, { port => 0 });

/// `struct evtchn_reset` (2 bytes); also the argument of `EVTCHNOP_reset_cont`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnReset {
    /// IN: domain whose ports are closed (`DOMID_SELF`).
    pub dom: DomId,
}
abi_layout!(EvtchnReset, 2, { dom => 0 });

/// `struct evtchn_init_control` (24 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnInitControl {
    /// IN: GFN of the page holding the control block.
    pub control_gfn: u64,
    /// IN: byte offset of the control block (8-byte aligned, must fit).
    pub offset: u32,
    /// IN: vCPU the control block belongs to.
    pub vcpu: u32,
    /// OUT: number of LINK bits in an event word ([`EVTCHN_FIFO_LINK_BITS`]).
    pub link_bits: u8,
    /// Padding.
    pub pad: [u8; 7],
}
abi_layout!(EvtchnInitControl, 24, {
    control_gfn => 0, offset => 8, vcpu => 12, link_bits => 16, pad => 17,
});

/// `struct evtchn_expand_array` (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnExpandArray {
    /// IN: GFN of the next event-array page.
    pub array_gfn: u64,
}
abi_layout!(EvtchnExpandArray, 8, { array_gfn => 0 });

/// `struct evtchn_set_priority` (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnSetPriority {
    /// IN: port.
    pub port: EvtchnPort,
    /// IN: priority, 0 (highest) ..= [`EVTCHN_FIFO_PRIORITY_MIN`].
    pub priority: u32,
}
abi_layout!(EvtchnSetPriority, 8, { port => 0, priority => 4 });

// --- FIFO ABI --------------------------------------------------------------------------

/// Highest FIFO priority (`EVTCHN_FIFO_PRIORITY_MAX`).
pub const EVTCHN_FIFO_PRIORITY_MAX: u32 = 0;
/// Default FIFO priority (`EVTCHN_FIFO_PRIORITY_DEFAULT`).
pub const EVTCHN_FIFO_PRIORITY_DEFAULT: u32 = 7;
/// Lowest FIFO priority (`EVTCHN_FIFO_PRIORITY_MIN`).
pub const EVTCHN_FIFO_PRIORITY_MIN: u32 = 15;
/// Number of FIFO queues per vCPU (`EVTCHN_FIFO_MAX_QUEUES`).
pub const EVTCHN_FIFO_MAX_QUEUES: usize = 16;
/// Number of LINK bits in an event word (`EVTCHN_FIFO_LINK_BITS`).
pub const EVTCHN_FIFO_LINK_BITS: u32 = 17;
/// Mask of the LINK field (`EVTCHN_FIFO_LINK_MASK`).
pub const EVTCHN_FIFO_LINK_MASK: u32 = (1 << EVTCHN_FIFO_LINK_BITS) - 1;
/// Number of ports of the FIFO ABI (`EVTCHN_FIFO_NR_CHANNELS`).
pub const EVTCHN_FIFO_NR_CHANNELS: u32 = 1 << EVTCHN_FIFO_LINK_BITS;
/// Event words per 4 KiB event-array page (`EVTCHN_FIFO_EVENT_WORDS_PER_PAGE`).
pub const EVTCHN_FIFO_EVENT_WORDS_PER_PAGE: u32 = 1024;
/// Maximum number of event-array pages (`EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES`).
pub const EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES: u32 =
    EVTCHN_FIFO_NR_CHANNELS / EVTCHN_FIFO_EVENT_WORDS_PER_PAGE;

/// Returns the event-array page index and word index of FIFO `port`.
pub const fn fifo_word_location(port: EvtchnPort) -> (u32, u32) {
    (
        port / EVTCHN_FIFO_EVENT_WORDS_PER_PAGE,
        port % EVTCHN_FIFO_EVENT_WORDS_PER_PAGE,
    )
}

/// `struct evtchn_fifo_control_block` (72 bytes): one per vCPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnFifoControlBlock {
    /// Bit q set = queue q is not empty.
    pub ready: u32,
    /// Reserved.
    pub rsvd: u32,
    /// Head port of each queue (0 = the guest keeps its own head).
    pub head: [u32; EVTCHN_FIFO_MAX_QUEUES],
}
abi_layout!(EvtchnFifoControlBlock, 72, { ready => 0, rsvd => 4, head => 8 });

/// Offset of `ready` in the FIFO control block, for atomic access.
pub const EVTCHN_FIFO_CONTROL_READY_OFFSET: usize = 0;
/// Offset of `head[0]` in the FIFO control block, for atomic access.
pub const EVTCHN_FIFO_CONTROL_HEAD_OFFSET: usize = 8;

bitflags! {
    /// Status bits of a FIFO event word (`EVTCHN_FIFO_*`); bits 16:0 are the
    /// LINK field, see [`EvtchnFifoWord`].
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
    #[cfg_attr(feature = "serde", serde(transparent))]
    pub struct FifoEventFlags: u32 {
        /// The event is pending (`EVTCHN_FIFO_PENDING`, bit 31).
        const PENDING = 1 << 31;
        /// The event is masked (`EVTCHN_FIFO_MASKED`, bit 30).
        const MASKED = 1 << 30;
        /// The event is on a queue (`EVTCHN_FIFO_LINKED`, bit 29).
        const LINKED = 1 << 29;
        /// Xen is updating LINK; the guest must not unmask (`EVTCHN_FIFO_BUSY`, bit 28).
        const BUSY = 1 << 28;
    }
}

/// A FIFO event word (`event_word_t`): [`FifoEventFlags`] in bits 31:28 and
/// the LINK (next port in the queue, 0 = end) in bits 16:0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct EvtchnFifoWord(pub u32);

impl EvtchnFifoWord {
    /// The value guests pre-initialise new event-array words to.
    pub const INITIAL: EvtchnFifoWord = EvtchnFifoWord(FifoEventFlags::MASKED.bits());

    /// Builds a word from flags and a link.
    pub fn new(flags: FifoEventFlags, link: EvtchnPort) -> crate::Result<Self> {
        EvtchnFifoWord(flags.bits()).with_link(link)
    }

    /// Returns the status bits.
    pub const fn flags(self) -> FifoEventFlags {
        FifoEventFlags::from_bits_truncate(self.0)
    }

    /// Returns the LINK field.
    pub const fn link(self) -> EvtchnPort {
        self.0 & EVTCHN_FIFO_LINK_MASK
    }

    /// Returns the word with its LINK field replaced by `link`.
    pub fn with_link(self, link: EvtchnPort) -> crate::Result<Self> {
        if link > EVTCHN_FIFO_LINK_MASK {
            return Err(crate::AbiError::OutOfRange {
                what: "FIFO event link",
                value: u64::from(link),
                max: u64::from(EVTCHN_FIFO_LINK_MASK),
            });
        }
        Ok(EvtchnFifoWord((self.0 & !EVTCHN_FIFO_LINK_MASK) | link))
    }

    /// Returns the word with `flags` set (other bits unchanged).
    pub const fn with_flags(self, flags: FifoEventFlags) -> Self {
        EvtchnFifoWord(self.0 | flags.bits())
    }

    /// Returns the word with `flags` cleared (other bits unchanged).
    pub const fn without_flags(self, flags: FifoEventFlags) -> Self {
        EvtchnFifoWord(self.0 & !flags.bits())
    }

    /// True if PENDING is set.
    pub const fn is_pending(self) -> bool {
        self.0 & FifoEventFlags::PENDING.bits() != 0
    }

    /// True if MASKED is set.
    pub const fn is_masked(self) -> bool {
        self.0 & FifoEventFlags::MASKED.bits() != 0
    }

    /// True if LINKED is set.
    pub const fn is_linked(self) -> bool {
        self.0 & FifoEventFlags::LINKED.bits() != 0
    }

    /// True if BUSY is set.
    pub const fn is_busy(self) -> bool {
        self.0 & FifoEventFlags::BUSY.bits() != 0
    }
}

impl From<u32> for EvtchnFifoWord {
    fn from(raw: u32) -> Self {
        EvtchnFifoWord(raw)
    }
}

impl From<EvtchnFifoWord> for u32 {
    fn from(word: EvtchnFifoWord) -> u32 {
        word.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AbiError;
    use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

    #[test]
    fn test_evtchn_op_all_values_round_trip() {
        for &op in EvtchnOp::ALL {
            assert_eq!(EvtchnOp::try_from(op.raw()).unwrap(), op);
        }
        assert_eq!(EvtchnOp::ALL.len(), 15);
        assert!(EvtchnOp::try_from(15).is_err());
    }

    #[test]
    fn test_evtchn_stat_all_values_round_trip() {
        for &s in EvtchnStat::ALL {
            assert_eq!(EvtchnStat::try_from(s.raw()).unwrap(), s);
        }
        assert!(EvtchnStat::try_from(6).is_err());
    }

    #[test]
    fn test_evtchn_status_detail_round_trips_every_kind() {
        let details = [
            EvtchnStatusDetail::Closed,
            EvtchnStatusDetail::Unbound { dom: 0x7ff0 },
            EvtchnStatusDetail::Interdomain { dom: 3, port: 77 },
            EvtchnStatusDetail::Pirq(9),
            EvtchnStatusDetail::Virq(1),
            EvtchnStatusDetail::Ipi,
        ];
        for d in details {
            let mut s = EvtchnStatus::default();
            s.set_detail(d);
            assert_eq!(s.detail().unwrap(), d);
            assert_eq!(s.status, d.stat().raw());
        }
    }

    #[test]
    fn test_evtchn_status_interdomain_bytes_land_at_offsets() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap();
        let mut s = EvtchnStatus {
            dom: 0x7ff0,
            port: 5,
            vcpu: 2,
            ..Default::default()
        };
        s.set_detail(EvtchnStatusDetail::Interdomain { dom: 4, port: 0x55 });
        mem.write_obj(s, GuestAddress(0x200)).unwrap();
        assert_eq!(mem.read_obj::<u32>(GuestAddress(0x208)).unwrap(), 2);
        assert_eq!(mem.read_obj::<u32>(GuestAddress(0x20c)).unwrap(), 2);
        assert_eq!(mem.read_obj::<u16>(GuestAddress(0x210)).unwrap(), 4);
        assert_eq!(mem.read_obj::<u32>(GuestAddress(0x214)).unwrap(), 0x55);
    }

    #[test]
    fn test_evtchn_status_unknown_status_rejected() {
        let s = EvtchnStatus {
            status: 9,
            ..Default::default()
        };
        assert_eq!(
            s.detail(),
            Err(AbiError::UnknownValue {
                what: "event channel status",
                value: 9
            })
        );
    }

    #[test]
    fn test_bind_pirq_flags_decoded() {
        let b = EvtchnBindPirq {
            pirq: 3,
            flags: 1,
            port: 0,
        };
        assert_eq!(b.bind_flags(), BindPirqFlags::WILL_SHARE);
    }

    #[test]
    fn test_port_limits_match_reference() {
        assert_eq!(EVTCHN_2L_NR_CHANNELS, 4096);
        assert_eq!(EVTCHN_2L_NR_CHANNELS_COMPAT, 1024);
        assert_eq!(EVTCHN_FIFO_NR_CHANNELS, 131_072);
        assert_eq!(EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES, 128);
        assert_eq!(EVTCHN_FIFO_LINK_MASK, 0x1ffff);
        assert_eq!(fifo_word_location(1025), (1, 1));
    }

    #[test]
    fn test_fifo_word_accessors_decode_flags_and_link() {
        let w = EvtchnFifoWord(0xa000_0123);
        assert!(w.is_pending());
        assert!(!w.is_masked());
        assert!(w.is_linked());
        assert!(!w.is_busy());
        assert_eq!(w.flags(), FifoEventFlags::PENDING | FifoEventFlags::LINKED);
        assert_eq!(w.link(), 0x123);
    }

    #[test]
    fn test_fifo_word_with_link_replaces_only_link() {
        let w = EvtchnFifoWord::new(FifoEventFlags::LINKED | FifoEventFlags::BUSY, 5).unwrap();
        assert_eq!(w.0, (1 << 29) | (1 << 28) | 5);
        let w = w.with_link(0x1ffff).unwrap();
        assert_eq!(w.link(), 0x1ffff);
        assert_eq!(w.flags(), FifoEventFlags::LINKED | FifoEventFlags::BUSY);
        let w = w
            .without_flags(FifoEventFlags::BUSY)
            .with_flags(FifoEventFlags::MASKED);
        assert_eq!(w.flags(), FifoEventFlags::LINKED | FifoEventFlags::MASKED);
    }

    #[test]
    fn test_fifo_word_with_link_too_large_rejected() {
        assert_eq!(
            EvtchnFifoWord(0).with_link(0x20000),
            Err(AbiError::OutOfRange {
                what: "FIFO event link",
                value: 0x20000,
                max: 0x1ffff
            })
        );
    }

    #[test]
    fn test_fifo_word_initial_is_masked() {
        assert!(EvtchnFifoWord::INITIAL.is_masked());
        assert_eq!(u32::from(EvtchnFifoWord::INITIAL), 0x4000_0000);
    }

    #[test]
    fn test_fifo_control_block_write_bytes_land_at_offsets() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap();
        let mut cb = EvtchnFifoControlBlock {
            ready: 1 << 7,
            ..Default::default()
        };
        cb.head[7] = 42;
        cb.head[15] = 99;
        mem.write_obj(cb, GuestAddress(0x100)).unwrap();
        assert_eq!(mem.read_obj::<u32>(GuestAddress(0x100)).unwrap(), 0x80);
        assert_eq!(
            mem.read_obj::<u32>(GuestAddress(0x100 + 8 + 7 * 4))
                .unwrap(),
            42
        );
        assert_eq!(
            mem.read_obj::<u32>(GuestAddress(0x100 + 8 + 15 * 4))
                .unwrap(),
            99
        );
    }
}
