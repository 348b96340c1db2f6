//! The guest's initramfs: a cpio archive in the kernel's `newc` format,
//! gzip-compressed by the host's `gzip`.
//!
//! `newc` (see the kernel's `Documentation/driver-api/early-userspace/
//! buffer-format.rst`): each entry is the magic `070701`, thirteen 8-digit
//! hex fields, the NUL-terminated name padded to a multiple of 4 bytes
//! (counting the 110-byte header), then the data padded to 4 bytes. The
//! archive ends with an entry named `TRAILER!!!`.

use std::io::{self, Write};
use std::path::Path;
use std::process::{Command, Stdio};

/// An archive being built in memory.
#[derive(Debug, Default)]
pub(crate) struct Cpio {
    buf: Vec<u8>,
    ino: u32,
}

impl Cpio {
    /// A directory (mode 0755).
    pub(crate) fn dir(&mut self, name: &str) {
        self.entry(name, 0o040_755, (0, 0), &[]);
    }

    /// A regular file with `perm` bits.
    pub(crate) fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, 0o100_000 | perm, (0, 0), data);
    }

    /// A character device node (`/dev/console`: the kernel opens it for
    /// `/init`'s standard streams before any devtmpfs is mounted).
    pub(crate) fn char_dev(&mut self, name: &str, perm: u32, major: u32, minor: u32) {
        self.entry(name, 0o020_000 | perm, (major, minor), &[]);
    }

    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.ino += 1;
        let namesize = name.len() + 1;
        let fields = [
            self.ino,
            mode,
            0, // uid
            0, // gid
            if mode & 0o040_000 != 0 { 2 } else { 1 },
            0, // mtime: reproducible archives
            u32::try_from(data.len()).expect("initramfs file over 4 GiB"),
            0, // devmajor
            0, // devminor
            rdev.0,
            rdev.1,
            u32::try_from(namesize).expect("short name"),
            0, // check (only for the 070702 format)
        ];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while self.buf.len() % 4 != 0 {
            self.buf.push(0);
        }
    }

    /// Ends the archive and returns its bytes.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        self.buf
    }
}

/// Compresses `data` with the host's `gzip` into `out`.
pub(crate) fn gzip_to(data: &[u8], out: &Path) -> io::Result<()> {
    let file = std::fs::File::create(out)?;
    let mut child = Command::new("gzip")
        .args(["-n", "-6"])
        .stdin(Stdio::piped())
        .stdout(file)
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("running gzip: {e}")))?;
    child.stdin.take().expect("piped").write_all(data)?;
    let status = child.wait()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("gzip failed: {status}")))
    }
}

/// The root every guest of the xtasks starts from: the usual directories,
/// `/dev/console`, and the static busybox at `bin/busybox` (its applets
/// installed by the init script).
pub(crate) fn busybox_root(busybox: &Path) -> Result<Cpio, String> {
    let mut c = Cpio::default();
    for d in [
        "bin",
        "sbin",
        "usr",
        "usr/bin",
        "usr/sbin",
        "dev",
        "proc",
        "sys",
        "tmp",
        "lib",
        "lib/modules",
    ] {
        c.dir(d);
    }
    c.char_dev("dev/console", 0o600, 5, 1);
    let bytes = std::fs::read(busybox).map_err(|e| format!("{}: {e}", busybox.display()))?;
    c.file("bin/busybox", 0o755, &bytes);
    Ok(c)
}

/// Adds each kernel module of `modules` (decompressed) as
/// `lib/modules/NAME.ko`; returns those names, in order, for the init
/// script's `insmod`s.
pub(crate) fn add_modules(
    c: &mut Cpio,
    modules: &[std::path::PathBuf],
) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    for m in modules {
        let file = m.file_name().and_then(|f| f.to_str()).unwrap_or_default();
        let name = format!("{}.ko", crate::pktgen::module_name(file));
        c.file(
            &format!("lib/modules/{name}"),
            0o644,
            &crate::read_module(m)?,
        );
        names.push(name);
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_layout() {
        let mut c = Cpio::default();
        c.file("init", 0o755, b"abcde");
        let b = c.finish();
        assert_eq!(&b[..6], b"070701");
        // mode field (second) and file size (seventh).
        assert_eq!(&b[14..22], b"000081ed");
        assert_eq!(&b[54..62], b"00000005");
        // Header 110 + "init\0" 5 = 115, padded to 116; data 5 padded to 8.
        assert_eq!(&b[110..115], b"init\0");
        assert_eq!(&b[116..121], b"abcde");
        assert_eq!(&b[124..130], b"070701");
        assert!(b.windows(10).any(|w| w == b"TRAILER!!!"));
        assert_eq!(b.len() % 4, 0);
    }
}
