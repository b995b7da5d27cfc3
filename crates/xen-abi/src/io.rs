// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Shared-memory I/O protocols, mirroring `xen/include/public/io/`.
//!
//! Follows interface version 0x00041300 (Xen 4.23-unstable). Each submodule
//! mirrors one header:
//!
//! * [`xs_wire`]: `io/xs_wire.h`, the XenStore ring page and messages
//!   (`xen-abi.md` §5.2, §5.3);
//! * [`console`]: `io/console.h`, the PV console ring (§6.1);
//! * [`ring`]: `io/ring.h`, the generic request/response ring header (§6.2).
//!
//! All of these layouts are identical for 32-bit and 64-bit guests.

pub mod console;
pub mod ring;
pub mod xs_wire;
