// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A recording stand-in for the raw ioctls, for tests without `/dev/kvm`.

#![allow(clippy::undocumented_unsafe_blocks)]

use std::collections::HashMap;
use std::sync::Mutex;

use super::*;

/// One recorded call.
#[derive(Clone, Copy)]
pub(crate) enum Call {
    Config(kvm_xen_hvm_config),
    HvmSet(kvm_xen_hvm_attr),
    HvmGet(u16),
    Send(kvm_irq_routing_xen_evtchn),
    VcpuSet(kvm_xen_vcpu_attr),
    VcpuGet(u16),
}

/// Stores the last SET per type and returns it on GET; `fail` makes
/// the next call fail with that errno.
#[derive(Default)]
pub(crate) struct Mock {
    pub(crate) calls: Mutex<Vec<Call>>,
    hvm: Mutex<HashMap<u16, kvm_xen_hvm_attr>>,
    vcpu: Mutex<HashMap<u16, kvm_xen_vcpu_attr>>,
    pub(crate) fail: Mutex<Option<i32>>,
}

impl Mock {
    fn failing(&self) -> errno::Result<()> {
        match self.fail.lock().unwrap().take() {
            Some(e) => Err(errno::Error::new(e)),
            None => Ok(()),
        }
    }

    pub(crate) fn hvm_sets(&self) -> Vec<kvm_xen_hvm_attr> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter_map(|c| match c {
                Call::HvmSet(a) => Some(*a),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn vcpu_sets(&self) -> Vec<kvm_xen_vcpu_attr> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter_map(|c| match c {
                Call::VcpuSet(a) => Some(*a),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn configs(&self) -> Vec<kvm_xen_hvm_config> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter_map(|c| match c {
                Call::Config(a) => Some(*a),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn sends(&self) -> Vec<kvm_irq_routing_xen_evtchn> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter_map(|c| match c {
                Call::Send(a) => Some(*a),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn clear(&self) {
        self.calls.lock().unwrap().clear();
    }
}

impl XenVmRaw for Mock {
    fn raw_xen_hvm_config(&self, config: &kvm_xen_hvm_config) -> errno::Result<()> {
        self.calls.lock().unwrap().push(Call::Config(*config));
        self.failing()
    }
    fn raw_xen_hvm_get_attr(&self, attr: &mut kvm_xen_hvm_attr) -> errno::Result<()> {
        self.calls.lock().unwrap().push(Call::HvmGet(attr.type_));
        self.failing()?;
        match self.hvm.lock().unwrap().get(&attr.type_) {
            Some(a) => *attr = *a,
            None => return Err(errno::Error::new(ENOENT)),
        }
        Ok(())
    }
    fn raw_xen_hvm_set_attr(&self, attr: &kvm_xen_hvm_attr) -> errno::Result<()> {
        self.calls.lock().unwrap().push(Call::HvmSet(*attr));
        self.failing()?;
        self.hvm.lock().unwrap().insert(attr.type_, *attr);
        Ok(())
    }
    fn raw_xen_hvm_evtchn_send(&self, evtchn: &kvm_irq_routing_xen_evtchn) -> errno::Result<()> {
        self.calls.lock().unwrap().push(Call::Send(*evtchn));
        self.failing()
    }
}

impl XenVcpuRaw for Mock {
    fn raw_xen_vcpu_get_attr(&self, attr: &mut kvm_xen_vcpu_attr) -> errno::Result<()> {
        self.calls.lock().unwrap().push(Call::VcpuGet(attr.type_));
        self.failing()?;
        match self.vcpu.lock().unwrap().get(&attr.type_) {
            Some(a) => *attr = *a,
            None => return Err(errno::Error::new(ENOENT)),
        }
        Ok(())
    }
    fn raw_xen_vcpu_set_attr(&self, attr: &kvm_xen_vcpu_attr) -> errno::Result<()> {
        self.calls.lock().unwrap().push(Call::VcpuSet(*attr));
        self.failing()?;
        self.vcpu.lock().unwrap().insert(attr.type_, *attr);
        Ok(())
    }
}
