// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! xen-on-kvm: host unmodified Xen HVM guests on KVM.
//!
//! This facade re-exports the workspace's crates so that a VMM can depend on
//! one package; each crate can also be used on its own.
//!
//! | module | crate | what it holds |
//! |---|---|---|
//! | [`abi`] | `xen-abi` | the Xen public ABI as Rust data |
//! | [`cpuid`] | `xen-cpuid` | the Xen CPUID leaves, applied to a KVM `CpuId` |
//! | [`hypercall`] | `xen-hypercall` | calling conventions, pages, guest pointers, dispatcher, domU hypercalls |
//! | [`evtchn`] | `xen-evtchn` | event channels: ports, 2-level and FIFO delivery, back ends |
//! | [`gnttab`] | `xen-gnttab` | grant tables v1 and v2 in guest frames, and the back ends' side |
//! | [`store`] | `xen-store` | a XenStore server: tree, permissions, transactions, watches, quotas, the ring |
//! | [`console`] | `xen-console` | the primary PV console's back end |
//! | [`platform`] | `xen-platform-pci` | the Xen platform PCI device |
//! | [`domain`] | `xen-domain` | one Xen domain assembled from one `DomainConfig`, and its state |
//! | [`kvm`] | `xen-kvm-accel` | a domain on a KVM VM: both hypercall paths, upcall injection, vCPUs |
//!
//! The example in `examples/` boots a guest under KVM; see the README.

#![deny(missing_docs)]

pub use xen_abi as abi;
pub use xen_console as console;
pub use xen_cpuid as cpuid;
pub use xen_domain as domain;
pub use xen_evtchn as evtchn;
pub use xen_gnttab as gnttab;
pub use xen_hypercall as hypercall;
pub use xen_kvm_accel as kvm;
pub use xen_platform_pci as platform;
pub use xen_store as store;
