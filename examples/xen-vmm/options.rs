// Copyright 2026 The xen-on-kvm Authors
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Command-line options, in the spirit of QEMU's, parsed by clap. A bad
//! option exits with status 2 and says why (`--cpus 9: must be 1 to 4`).

use std::fmt::Display;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::TypedValueParser;
use clap::error::{ContextKind, ErrorKind};
use clap::{Arg, ArgGroup, Command, CommandFactory, Parser};
use xen_cpuid::{VersionError, XenVersion};
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

/// Everything the user asked for.
#[derive(Clone, Debug, Parser)]
#[command(name = "xen-vmm", about = ABOUT, after_help = EXIT_STATUS)]
#[command(override_usage = "xen-vmm [options]")]
#[command(help_template = "usage: {usage}\n\n{about}\n\noptions:\n{options}{after-help}")]
#[command(group(ArgGroup::new("image").args(["kernel", "elf"])))]
pub(crate) struct Options {
    /// Xen version to present: 0x4000a, 262154 or 4.10 (default);
    /// 'off' gives a plain KVM VM without Xen
    #[arg(long = "xen-version", value_name = "V", verbatim_doc_comment)]
    #[arg(default_value = "4.10", hide_default_value = true, value_parser = Check(xen))]
    pub(crate) xen: ::std::option::Option<XenVersion>,
    /// Advertise the virtual-APIC HVM CPUID flags
    #[arg(long = "xen-vapic")]
    pub(crate) vapic: bool,
    /// Hypercall path: auto (default), kernel or user
    #[arg(long, value_name = "A", value_parser = Check(accel))]
    #[arg(default_value = "auto", hide_default_value = true)]
    pub(crate) accel: PathChoice,
    /// Guest RAM: bytes or with a K/M/G suffix, 16M to 64G
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = Check(memory))]
    pub(crate) memory: u64,
    /// vCPUs, 1 to 4
    #[arg(long, value_name = "N", default_value = "1", value_parser = Check(cpus))]
    pub(crate) cpus: u32,
    /// Boot a Linux bzImage (64-bit boot protocol)
    #[arg(long, value_name = "FILE")]
    pub(crate) kernel: Option<PathBuf>,
    /// Initial ramdisk for --kernel or --elf
    #[arg(long, value_name = "FILE", requires = "image")]
    pub(crate) initrd: Option<PathBuf>,
    /// Kernel command line (also given to --elf and the embedded
    /// guest, which understands 'crash', 'hang' and 'watchdog')
    #[arg(long, value_name = "TEXT", verbatim_doc_comment)]
    #[arg(default_value = "", hide_default_value = true)]
    pub(crate) cmdline: String,
    /// Boot an ELF32 or ELF64 kernel: through its PVH entry note
    /// if it has one (32-bit flat mode, EBX = hvm_start_info), else
    /// at its entry point
    #[arg(long, value_name = "FILE", verbatim_doc_comment)]
    pub(crate) elf: Option<PathBuf>,
    /// Guest console: xen (the PV console, Linux's hvc0, on stdout and
    /// stdin; the default), serial (no PV console: the 16550 only) or
    /// none (no PV console, serial output dropped)
    #[arg(long, value_name = "C", value_parser = Check(console), verbatim_doc_comment)]
    #[arg(default_value = "xen", hide_default_value = true)]
    pub(crate) console: ConsoleChoice,
    /// Log every hypercall with arguments and result (stderr)
    #[arg(long)]
    pub(crate) trace: bool,
    /// Serve the monitor on a Unix socket at PATH
    #[arg(long, value_name = "PATH")]
    pub(crate) monitor: Option<PathBuf>,
    /// Stop the guest after SECS seconds (exit status 124)
    #[arg(long, value_name = "SECS", value_parser = Check(timeout))]
    #[arg(allow_negative_numbers = true)]
    pub(crate) timeout: Option<Duration>,
}

impl Options {
    /// The options of this process; a bad one ends it with status 2.
    pub(crate) fn from_env() -> Self {
        Self::check(Self::try_parse()).unwrap_or_else(|e| e.exit())
    }

    /// Words unknown options as before and checks what clap cannot say.
    fn check(parsed: Result<Self, clap::Error>) -> Result<Self, clap::Error> {
        let error = |kind, msg: String| Self::command().error(kind, msg);
        let o = parsed.map_err(|e| match (e.kind(), e.get(ContextKind::InvalidArg)) {
            (ErrorKind::UnknownArgument, Some(arg)) => {
                error(e.kind(), format!("unknown option {arg} (see --help)"))
            }
            _ => e,
        })?;
        if o.vapic && o.xen.is_none() {
            let why = "--xen-vapic needs Xen (--xen-version is off)";
            return Err(error(ErrorKind::ArgumentConflict, why.into()));
        }
        Ok(o)
    }
}

/// A value parser whose errors name the option and the value, as in
/// `--cpus 9: must be 1 to 4`.
#[derive(Clone)]
struct Check<T, E = &'static str>(fn(&str) -> Result<T, E>);

impl<T: Clone + Send + Sync + 'static, E: Clone + Display + 'static> TypedValueParser
    for Check<T, E>
{
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &Command,
        arg: Option<&Arg>,
        v: &std::ffi::OsStr,
    ) -> clap::error::Result<T> {
        let v = v.to_string_lossy();
        (self.0)(&v).map_err(|why| {
            let name = arg.and_then(Arg::get_long).unwrap_or_default();
            cmd.clone()
                .error(ErrorKind::ValueValidation, format!("--{name} {v}: {why}"))
        })
    }
}

fn xen(v: &str) -> Result<Option<XenVersion>, VersionError> {
    (v != "off").then(|| v.parse()).transpose()
}

/// Where the guest's console goes (`--console`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConsoleChoice {
    /// The Xen PV console on stdout and stdin (and the serial port).
    Xen,
    /// The serial port only.
    Serial,
    /// Neither: serial output is dropped too.
    None,
}

fn console(v: &str) -> Result<ConsoleChoice, &'static str> {
    match v {
        "xen" => Ok(ConsoleChoice::Xen),
        "serial" => Ok(ConsoleChoice::Serial),
        "none" => Ok(ConsoleChoice::None),
        _ => Err("use xen, serial or none"),
    }
}

fn accel(v: &str) -> Result<PathChoice, &'static str> {
    let choices = [
        ("auto", PathChoice::Auto),
        ("kernel", PathChoice::Kernel),
        ("user", PathChoice::User),
    ];
    let choice = choices.into_iter().find(|c| c.0 == v);
    choice.map(|c| c.1).ok_or("use auto, kernel or user")
}

fn memory(v: &str) -> Result<u64, &'static str> {
    let (num, shift) = match v.char_indices().last() {
        Some((i, 'K' | 'k')) => (&v[..i], 10),
        Some((i, 'M' | 'm')) => (&v[..i], 20),
        Some((i, 'G' | 'g')) => (&v[..i], 30),
        _ => (v, 0),
    };
    let bytes = num
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift));
    let bytes = bytes.ok_or("not a size (use bytes or a K, M or G suffix)")?;
    let fits = (16 << 20..=64 << 30).contains(&bytes);
    fits.then_some(bytes).ok_or("must be between 16M and 64G")
}

fn cpus(v: &str) -> Result<u32, &'static str> {
    let n = v.parse().ok().filter(|n| (1..=4).contains(n));
    n.ok_or("must be 1 to 4")
}

fn timeout(v: &str) -> Result<Duration, &'static str> {
    let secs = v
        .parse()
        .ok()
        .filter(|s: &f64| s.is_finite() && *s > 0.0 && *s < 1e9);
    secs.map(Duration::from_secs_f64)
        .ok_or("not a positive number of seconds")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &str) -> Result<Options, String> {
        let args = std::iter::once("xen-vmm").chain(args.split_whitespace());
        Options::check(Options::try_parse_from(args)).map_err(|e| e.to_string())
    }

    #[test]
    fn test_options_values_and_bad_ones() {
        let o = parse("--memory=1G --cpus 2 --xen-version 4.17 --elf k --initrd i").unwrap();
        assert_eq!(
            (o.memory, o.cpus, o.xen.unwrap().raw()),
            (1 << 30, 2, 0x40011)
        );
        assert!(parse("--xen-version off").unwrap().xen.is_none());
        assert_eq!(parse("").unwrap().console, ConsoleChoice::Xen);
        assert_eq!(
            parse("--console serial").unwrap().console,
            ConsoleChoice::Serial
        );
        assert_eq!(
            parse("--console none").unwrap().console,
            ConsoleChoice::None
        );
        for (args, needle) in [
            ("--cpus 9", "--cpus 9: must be 1 to 4"),
            ("--memory 1M", "--memory 1M: must be between 16M and 64G"),
            ("--accel fast", "--accel fast: use auto, kernel or user"),
            ("--console tty", "--console tty: use xen, serial or none"),
            ("--frobnicate", "unknown option --frobnicate"),
            ("--initrd x", "--kernel <FILE>|--elf <FILE>"),
            ("--kernel a --elf b", "cannot be used with"),
            ("--timeout -1", "positive"),
            ("--xen-version off --xen-vapic", "needs Xen"),
        ] {
            let e = parse(args).unwrap_err();
            assert!(e.contains(needle), "{args}: {e}");
        }
    }
}
