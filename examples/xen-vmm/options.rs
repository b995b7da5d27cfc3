// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Command-line options, in the spirit of QEMU's, parsed by clap. A bad
//! option exits with status 2 and says why (`--cpus 9: must be 1 to 4`).

use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::TypedValueParser;
use clap::error::{ContextKind, ErrorKind};
use clap::{Arg, ArgGroup, Command, CommandFactory, Parser};
use xen_cpuid::XenVersion;
use xen_kvm_accel::PathChoice;

const ABOUT: &str = "\
Boots a guest under KVM presenting Xen (by default Xen 4.10) and runs it
until it shuts down. Without an image option it boots the embedded guest
that walks the whole Xen HVM flow.";

const EXIT_STATUS: &str = "\
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
#[derive(Clone, Debug, Parser)]
#[command(
    name = "xen-vmm",
    about = ABOUT,
    after_help = EXIT_STATUS,
    override_usage = "xen-vmm [options]",
    help_template = "usage: {usage}\n\n{about}\n\noptions:\n{options}{after-help}",
    group(ArgGroup::new("image").args(["kernel", "elf"])),
)]
pub(crate) struct Options {
    /// Xen version to present: 0x4000a, 262154 or 4.10 (default);
    /// 'off' gives a plain KVM VM without Xen
    #[arg(long = "xen-version", value_name = "V", default_value = "4.10", verbatim_doc_comment,
          hide_default_value = true, value_parser = Check(xen_version))]
    pub(crate) xen: ::std::option::Option<XenVersion>,
    /// Advertise the virtual-APIC HVM CPUID flags
    #[arg(long = "xen-vapic")]
    pub(crate) vapic: bool,
    /// Hypercall path: auto (default), kernel or user
    #[arg(long, value_name = "A", default_value = "auto", hide_default_value = true,
          value_parser = Check(accel))]
    pub(crate) accel: PathChoice,
    /// Guest RAM: bytes or with a K/M/G suffix, 16M to 64G
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = Check(memory))]
    pub(crate) memory: u64,
    /// vCPUs, 1 to 4
    #[arg(long, value_name = "N", default_value = "1", value_parser = Check(cpus))]
    pub(crate) cpus: u32,
    /// Boot a Linux bzImage (64-bit boot protocol)
    #[arg(long, value_name = "FILE")]
    kernel: Option<PathBuf>,
    /// Initial ramdisk for --kernel or --elf
    #[arg(long, value_name = "FILE", requires = "image")]
    pub(crate) initrd: Option<PathBuf>,
    /// Kernel command line (also given to --elf and the embedded
    /// guest, which understands 'crash' and 'hang')
    #[arg(
        long,
        value_name = "TEXT",
        default_value = "",
        hide_default_value = true,
        verbatim_doc_comment
    )]
    pub(crate) cmdline: String,
    /// Boot an ELF32 or ELF64 kernel: through its PVH entry note
    /// if it has one (32-bit flat mode, EBX = hvm_start_info), else
    /// at its entry point
    #[arg(long, value_name = "FILE", verbatim_doc_comment)]
    elf: Option<PathBuf>,
    /// Log every hypercall with arguments and result (stderr)
    #[arg(long)]
    pub(crate) trace: bool,
    /// Serve the monitor on a Unix socket at PATH
    #[arg(long, value_name = "PATH")]
    pub(crate) monitor: Option<PathBuf>,
    /// Stop the guest after SECS seconds (exit status 124)
    #[arg(long, value_name = "SECS", allow_negative_numbers = true, value_parser = Check(timeout))]
    pub(crate) timeout: Option<Duration>,
}

impl Options {
    /// The options of this process; a bad one ends it with status 2.
    pub(crate) fn from_env() -> Self {
        Self::check(Self::try_parse()).unwrap_or_else(|e| e.exit())
    }

    /// Checks what clap cannot express, and words unknown options as
    /// before.
    fn check(parsed: Result<Self, clap::Error>) -> Result<Self, clap::Error> {
        let o = parsed.map_err(|e| match (e.kind(), e.get(ContextKind::InvalidArg)) {
            (ErrorKind::UnknownArgument, Some(arg)) => Self::command().error(
                ErrorKind::UnknownArgument,
                format!("unknown option {arg} (see --help)"),
            ),
            _ => e,
        })?;
        if o.vapic && o.xen.is_none() {
            let why = "--xen-vapic needs Xen (--xen-version is off)";
            return Err(Self::command().error(ErrorKind::ArgumentConflict, why));
        }
        Ok(o)
    }

    /// The guest image to boot.
    pub(crate) fn image(&self) -> Image {
        match (&self.kernel, &self.elf) {
            (Some(k), _) => Image::Kernel(k.clone()),
            (_, Some(e)) => Image::Elf(e.clone()),
            _ => Image::Embedded,
        }
    }
}

/// A value parser whose errors name the option and the value, as in
/// `--cpus 9: must be 1 to 4`.
#[derive(Clone)]
struct Check<T>(fn(&str) -> Result<T, String>);

impl<T: Clone + Send + Sync + 'static> TypedValueParser for Check<T> {
    type Value = T;

    fn parse_ref(&self, cmd: &Command, arg: Option<&Arg>, v: &OsStr) -> Result<T, clap::Error> {
        let v = v.to_string_lossy();
        (self.0)(&v).map_err(|why| {
            let name = arg.and_then(Arg::get_long).unwrap_or_default();
            let mut cmd = cmd.clone();
            cmd.error(ErrorKind::ValueValidation, format!("--{name} {v}: {why}"))
        })
    }
}

fn xen_version(v: &str) -> Result<Option<XenVersion>, String> {
    match v {
        "off" => Ok(None),
        v => v.parse().map(Some).map_err(|e| format!("{e}")),
    }
}

fn accel(v: &str) -> Result<PathChoice, String> {
    match v {
        "auto" => Ok(PathChoice::Auto),
        "kernel" => Ok(PathChoice::Kernel),
        "user" => Ok(PathChoice::User),
        _ => Err("use auto, kernel or user".into()),
    }
}

fn memory(v: &str) -> Result<u64, String> {
    let (num, shift) = match v.as_bytes().last() {
        Some(b'K' | b'k') => (&v[..v.len() - 1], 10),
        Some(b'M' | b'm') => (&v[..v.len() - 1], 20),
        Some(b'G' | b'g') => (&v[..v.len() - 1], 30),
        _ => (v, 0),
    };
    let bytes = num
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift));
    match bytes {
        None => Err("not a size (use bytes or a K, M or G suffix)".into()),
        Some(b) if !(16 << 20..=64 << 30).contains(&b) => Err("must be between 16M and 64G".into()),
        Some(b) => Ok(b),
    }
}

fn cpus(v: &str) -> Result<u32, String> {
    v.parse()
        .ok()
        .filter(|n| (1..=4).contains(n))
        .ok_or_else(|| "must be 1 to 4".into())
}

fn timeout(v: &str) -> Result<Duration, String> {
    v.parse()
        .ok()
        .filter(|s: &f64| s.is_finite() && *s > 0.0 && *s < 1e9)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| "not a positive number of seconds".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, String> {
        let args = std::iter::once("xen-vmm").chain(args.iter().copied());
        Options::check(Options::try_parse_from(args)).map_err(|e| e.to_string())
    }

    #[test]
    fn test_options_defaults_and_values() {
        let o = parse(&[]).unwrap();
        assert_eq!(o.xen.unwrap().raw(), 0x4000a);
        assert_eq!(
            (o.memory, o.cpus, o.image()),
            (256 << 20, 1, Image::Embedded)
        );
        let args = [
            "--memory=1G",
            "--cpus",
            "2",
            "--xen-version",
            "4.17",
            "--trace",
        ];
        let o = parse(&args).unwrap();
        assert_eq!((o.memory, o.cpus, o.trace), (1 << 30, 2, true));
        assert_eq!(o.xen.unwrap().raw(), 0x40011);
        assert!(parse(&["--xen-version", "off"]).unwrap().xen.is_none());
        let o = parse(&["--elf", "k", "--initrd", "i", "--timeout", "1.5"]).unwrap();
        assert_eq!(o.image(), Image::Elf("k".into()));
        assert_eq!(o.timeout, Some(Duration::from_millis(1500)));
    }

    #[test]
    fn test_options_bad_ones_say_why() {
        for (args, needle) in [
            (&["--cpus", "9"][..], "--cpus 9: must be 1 to 4"),
            (&["--memory", "lots"], "not a size"),
            (&["--memory", "1M"], "between"),
            (
                &["--accel", "fast"],
                "--accel fast: use auto, kernel or user",
            ),
            (&["--xen-version", "0x410"], "--xen-version 0x410"),
            (&["--frobnicate"], "unknown option --frobnicate"),
            (&["--cpus"], "--cpus <N>"),
            (&["--initrd", "x"], "--kernel <FILE>|--elf <FILE>"),
            (&["--kernel", "a", "--elf", "b"], "cannot be used with"),
            (&["--timeout", "-1"], "positive"),
            (&["--xen-version", "off", "--xen-vapic"], "needs Xen"),
        ] {
            let e = parse(args).unwrap_err();
            assert!(e.contains(needle), "{args:?}: {e}");
        }
    }
}
