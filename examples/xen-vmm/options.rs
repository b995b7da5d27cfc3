// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Command-line options, in the spirit of QEMU's.

use std::path::PathBuf;
use std::time::Duration;

use xen_cpuid::XenVersion;
use xen_kvm_accel::PathChoice;

pub(crate) const USAGE: &str = "\
usage: xen-vmm [options]

Boots a guest under KVM presenting Xen (by default Xen 4.10) and runs it
until it shuts down. Without an image option it boots the embedded guest
that walks the whole Xen HVM flow.

options:
  --xen-version V   Xen version to present: 0x4000a, 262154 or 4.10 (default);
                    'off' gives a plain KVM VM without Xen
  --xen-vapic       advertise the virtual-APIC HVM CPUID flags
  --accel A         hypercall path: auto (default), kernel or user
  --memory SIZE     guest RAM: bytes or with a K/M/G suffix (default 256M)
  --cpus N          vCPUs, 1 to 4 (default 1)
  --kernel FILE     boot a Linux bzImage (64-bit boot protocol)
  --initrd FILE     initial ramdisk for --kernel or --elf
  --cmdline TEXT    kernel command line (also given to --elf and the
                    embedded guest, which understands 'crash' and 'hang')
  --elf FILE        boot an ELF32 or ELF64 kernel: through its PVH entry
                    note if it has one (32-bit flat mode, EBX =
                    hvm_start_info), else at its entry point
  --trace           log every hypercall with arguments and result (stderr)
  --monitor PATH    serve the monitor on a Unix socket at PATH
  --timeout SECS    stop the guest after SECS seconds (exit status 124)
  -h, --help        this text

exit status: 0 poweroff, 1 VMM error, 2 bad option, 3 guest crash,
4 guest fault (triple fault, KVM internal error), 5 reboot, 6 suspend,
7 watchdog, 8 soft reset, 9 guest failure reported on the debug-exit port,
124 timeout.";

/// The guest image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Image {
    /// The embedded flow guest.
    Embedded,
    /// A Linux bzImage.
    Kernel(PathBuf),
    /// An ELF kernel.
    Elf(PathBuf),
}

/// Everything the user asked for.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    pub(crate) xen: Option<XenVersion>,
    pub(crate) vapic: bool,
    pub(crate) accel: PathChoice,
    pub(crate) memory: u64,
    pub(crate) cpus: u32,
    pub(crate) image: Image,
    pub(crate) initrd: Option<PathBuf>,
    pub(crate) cmdline: String,
    pub(crate) trace: bool,
    pub(crate) monitor: Option<PathBuf>,
    pub(crate) timeout: Option<Duration>,
}

/// What parsing produced.
#[derive(Debug)]
pub(crate) enum Parsed {
    Run(Box<Options>),
    Help,
}

fn size(v: &str) -> Result<u64, String> {
    let (num, shift) = match v.as_bytes().last() {
        Some(b'K' | b'k') => (&v[..v.len() - 1], 10),
        Some(b'M' | b'm') => (&v[..v.len() - 1], 20),
        Some(b'G' | b'g') => (&v[..v.len() - 1], 30),
        _ => (v, 0),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("--memory {v}: not a size (use bytes or a K, M or G suffix)"))
}

pub(crate) fn parse(args: impl IntoIterator<Item = String>) -> Result<Parsed, String> {
    let mut o = Options {
        xen: Some(XenVersion::try_from(0x4000a).expect("a valid version")),
        vapic: false,
        accel: PathChoice::Auto,
        memory: 256 << 20,
        cpus: 1,
        image: Image::Embedded,
        initrd: None,
        cmdline: String::new(),
        trace: false,
        monitor: None,
        timeout: None,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |what: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs {what}"))
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--xen-version" => {
                let v = value("a version (0x4000a, 4.10) or 'off'")?;
                o.xen = if v == "off" {
                    None
                } else {
                    Some(v.parse().map_err(|e| format!("--xen-version {v}: {e}"))?)
                };
            }
            "--xen-vapic" => o.vapic = true,
            "--accel" => {
                o.accel = match value("auto, kernel or user")?.as_str() {
                    "auto" => PathChoice::Auto,
                    "kernel" => PathChoice::Kernel,
                    "user" => PathChoice::User,
                    other => {
                        return Err(format!("--accel {other}: use auto, kernel or user"));
                    }
                }
            }
            "--memory" => {
                let v = value("a size")?;
                o.memory = size(&v)?;
                if !(16 << 20..=64 << 30).contains(&o.memory) {
                    return Err(format!("--memory {v}: must be between 16M and 64G"));
                }
            }
            "--cpus" => {
                let v = value("a count")?;
                o.cpus = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=4).contains(n))
                    .ok_or_else(|| format!("--cpus {v}: must be 1 to 4"))?;
            }
            "--kernel" | "--elf" => {
                if o.image != Image::Embedded {
                    return Err("give at most one of --kernel and --elf".into());
                }
                let p = PathBuf::from(value("a file")?);
                o.image = if name == "--kernel" {
                    Image::Kernel(p)
                } else {
                    Image::Elf(p)
                };
            }
            "--initrd" => o.initrd = Some(PathBuf::from(value("a file")?)),
            "--cmdline" => o.cmdline = value("the command line")?,
            "--trace" => o.trace = true,
            "--monitor" => o.monitor = Some(PathBuf::from(value("a socket path")?)),
            "--timeout" => {
                let v = value("seconds")?;
                let secs: f64 = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s > 0.0 && *s < 1e9)
                    .ok_or_else(|| format!("--timeout {v}: not a positive number of seconds"))?;
                o.timeout = Some(Duration::from_secs_f64(secs));
            }
            other => return Err(format!("unknown option {other} (see --help)")),
        }
    }
    if o.initrd.is_some() && o.image == Image::Embedded {
        return Err("--initrd needs --kernel or --elf".into());
    }
    if o.vapic && o.xen.is_none() {
        return Err("--xen-vapic needs Xen (--xen-version is off)".into());
    }
    Ok(Parsed::Run(Box::new(o)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Options, String> {
        match parse(args.iter().map(|s| s.to_string()))? {
            Parsed::Run(o) => Ok(*o),
            Parsed::Help => Err("help".into()),
        }
    }

    #[test]
    fn test_defaults_and_values() {
        let o = run(&[]).unwrap();
        assert_eq!(o.xen.unwrap().raw(), 0x4000a);
        assert_eq!((o.memory, o.cpus, o.image), (256 << 20, 1, Image::Embedded));
        let o = run(&[
            "--memory=1G",
            "--cpus",
            "2",
            "--xen-version",
            "4.17",
            "--trace",
        ])
        .unwrap();
        assert_eq!((o.memory, o.cpus, o.trace), (1 << 30, 2, true));
        assert_eq!(o.xen.unwrap().raw(), 0x40011);
        assert!(run(&["--xen-version", "off"]).unwrap().xen.is_none());
    }

    #[test]
    fn test_bad_options_say_why() {
        for (args, needle) in [
            (&["--cpus", "9"][..], "1 to 4"),
            (&["--memory", "lots"], "not a size"),
            (&["--memory", "1M"], "between"),
            (&["--accel", "fast"], "auto, kernel or user"),
            (&["--xen-version", "0x410"], "--xen-version"),
            (&["--frobnicate"], "unknown option"),
            (&["--cpus"], "needs a count"),
            (&["--initrd", "x"], "needs --kernel"),
            (&["--kernel", "a", "--elf", "b"], "at most one"),
            (&["--timeout", "-1"], "positive"),
            (&["--xen-version", "off", "--xen-vapic"], "needs Xen"),
        ] {
            let e = run(args).unwrap_err();
            assert!(e.contains(needle), "{args:?}: {e}");
        }
    }
}
