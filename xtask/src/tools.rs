//! What `cargo xtask qemu` needs from the host, and which Debian/Ubuntu
//! package provides each piece when it is missing.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The apt packages that provide everything [`Tools::find`] looks for.
pub(crate) const APT_PACKAGES: [&str; 3] =
    ["qemu-system-x86", "linux-image-amd64", "busybox-static"];

/// Everything found on the host.
#[derive(Debug)]
pub(crate) struct Tools {
    /// `qemu-system-x86_64`.
    pub(crate) qemu: PathBuf,
    /// `/boot/vmlinuz-<ver>`.
    pub(crate) kernel: PathBuf,
    /// The kernel version `<ver>` (the modules' directory name).
    pub(crate) kernel_version: String,
    /// `uio.ko` of that kernel (possibly compressed).
    pub(crate) uio: PathBuf,
    /// `uio_pci_generic.ko` of that kernel (possibly compressed).
    pub(crate) uio_pci_generic: PathBuf,
    /// A statically linked busybox.
    pub(crate) busybox: PathBuf,
}

/// One missing piece and the package that provides it.
#[derive(Debug)]
pub(crate) struct Missing {
    what: String,
    package: &'static str,
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (apt package {})", self.what, self.package)
    }
}

impl Tools {
    /// Looks for every tool; returns all that are missing at once.
    pub(crate) fn find() -> Result<Self, Vec<Missing>> {
        let mut missing = Vec::new();
        let qemu = which("qemu-system-x86_64");
        if qemu.is_none() {
            missing.push(Missing {
                what: "qemu-system-x86_64 on PATH".into(),
                package: "qemu-system-x86",
            });
        }
        let kernel = find_kernel();
        if let Err(why) = &kernel {
            missing.push(Missing {
                what: why.clone(),
                package: "linux-image-amd64",
            });
        }
        let busybox = find_busybox();
        if let Err(why) = &busybox {
            missing.push(Missing {
                what: why.clone(),
                package: "busybox-static",
            });
        }
        match (qemu, kernel, busybox) {
            (Some(qemu), Ok(k), Ok(busybox)) if missing.is_empty() => Ok(Self {
                qemu,
                kernel: k.image,
                kernel_version: k.version,
                uio: k.uio,
                uio_pci_generic: k.uio_pci_generic,
                busybox,
            }),
            _ => Err(missing),
        }
    }
}

/// `name` on `PATH`, if it is there and executable.
pub(crate) fn which(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

struct Kernel {
    image: PathBuf,
    version: String,
    uio: PathBuf,
    uio_pci_generic: PathBuf,
}

/// The newest `/boot/vmlinuz-<ver>` whose `/lib/modules/<ver>` has the uio
/// modules. The version is read from the file names, never assumed.
fn find_kernel() -> Result<Kernel, String> {
    let mut versions: Vec<String> = fs::read_dir("/boot")
        .map_err(|e| format!("a kernel image: cannot list /boot: {e}"))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_prefix("vmlinuz-").map(str::to_owned)
        })
        .collect();
    if versions.is_empty() {
        return Err("a kernel image /boot/vmlinuz-<version>".into());
    }
    // Newest first, comparing the numeric parts (6.10 after 6.9).
    versions.sort_by_key(|v| {
        v.split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse::<u64>().ok())
            .collect::<Vec<_>>()
    });
    versions.reverse();
    for v in &versions {
        let dir = Path::new("/lib/modules").join(v).join("kernel/drivers/uio");
        if let (Some(uio), Some(generic)) = (
            find_module(&dir, "uio"),
            find_module(&dir, "uio_pci_generic"),
        ) {
            return Ok(Kernel {
                image: Path::new("/boot").join(format!("vmlinuz-{v}")),
                version: v.clone(),
                uio,
                uio_pci_generic: generic,
            });
        }
    }
    Err(format!(
        "the uio and uio_pci_generic modules under /lib/modules/<version>/kernel/drivers/uio \
         for a kernel in /boot (found {})",
        versions.join(", ")
    ))
}

/// `dir/name.ko`, or a compressed `.ko.xz`/`.ko.zst`/`.ko.gz`.
fn find_module(dir: &Path, name: &str) -> Option<PathBuf> {
    ["ko", "ko.xz", "ko.zst", "ko.gz"]
        .iter()
        .map(|ext| dir.join(format!("{name}.{ext}")))
        .find(|p| p.is_file())
}

/// A busybox that is statically linked (the initramfs has no libc).
fn find_busybox() -> Result<PathBuf, String> {
    let mut candidates = vec![
        PathBuf::from("/bin/busybox"),
        PathBuf::from("/usr/bin/busybox"),
    ];
    candidates.extend(which("busybox"));
    let mut dynamic = None;
    for c in candidates {
        match is_static_elf(&c) {
            Some(true) => return Ok(c),
            Some(false) => dynamic = Some(c),
            None => {}
        }
    }
    Err(match dynamic {
        Some(d) => format!(
            "a statically linked busybox ({} is dynamically linked)",
            d.display()
        ),
        None => "busybox (statically linked)".into(),
    })
}

/// Whether `path` is an ELF64 executable without a `PT_INTERP` header (no
/// dynamic loader), or `None` if it is not a readable ELF64 file.
fn is_static_elf(path: &Path) -> Option<bool> {
    let b = fs::read(path).ok()?;
    if b.len() < 64 || &b[..4] != b"\x7fELF" || b[4] != 2 || b[5] != 1 {
        return None;
    }
    let u16_at = |o: usize| Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?));
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let phentsize = usize::from(u16_at(0x36)?);
    let phnum = usize::from(u16_at(0x38)?);
    const PT_INTERP: u32 = 3;
    for i in 0..phnum {
        if u32_at(phoff + i * phentsize)? == PT_INTERP {
            return Some(false);
        }
    }
    Some(true)
}

/// [`Tools::find`] for the xtask `who`: on what is missing, says so with
/// the apt line that installs it and gives the exit status 2.
pub(crate) fn find_or_report(who: &str) -> Result<Tools, ExitCode> {
    Tools::find().map_err(|missing| {
        eprintln!("xtask {who}: missing:");
        for m in &missing {
            eprintln!("  - {m}");
        }
        eprintln!(
            "install them with: sudo apt-get install -y {}",
            APT_PACKAGES.join(" ")
        );
        ExitCode::from(2)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_executable_is_not_static() {
        // The test binary itself links libc dynamically on the usual host.
        let me = std::env::current_exe().unwrap();
        let static_build = cfg!(target_feature = "crt-static");
        assert_eq!(is_static_elf(&me), Some(static_build));
        assert_eq!(is_static_elf(Path::new("/nonexistent")), None);
    }
}
