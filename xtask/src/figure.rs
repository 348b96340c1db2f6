//! The guest run's per-mode figure: the guest test prints the demo's
//! `--plot` picture of its runs on the console between two marker lines
//! (`em-uio`'s `figure.rs`); the console reader takes those lines out of
//! the stream and `cargo xtask qemu` writes them to `em-qemu.svg` beside
//! the initramfs (`target/qemu/`).

use std::path::Path;

/// The line before the figure (the guest's `figure::BEGIN`).
const BEGIN: &str = "MPSAFE-QEMU-FIGURE-BEGIN";
/// The line after it (the guest's `figure::END`).
const END: &str = "MPSAFE-QEMU-FIGURE-END";

/// The console lines between the markers.
#[derive(Debug, Default)]
pub(crate) struct Capture {
    open: Option<String>,
    done: Option<String>,
}

impl Capture {
    /// Takes `line` if it is part of the figure (the markers included), so
    /// the console does not print it; false for every other line.
    pub(crate) fn feed(&mut self, line: &str) -> bool {
        let t = line.trim();
        if t == BEGIN {
            self.open = Some(String::new());
            return true;
        }
        let Some(buf) = &mut self.open else {
            return false;
        };
        if t == END {
            self.done = self.open.take();
        } else {
            buf.push_str(line);
            buf.push('\n');
        }
        true
    }

    /// The figure, if both markers came.
    pub(crate) fn svg(self) -> Option<String> {
        self.done
    }
}

/// Writes `svg` to `path` if it is a whole SVG document (a console line the
/// kernel printed in the middle of it would break it).
pub(crate) fn write(svg: &str, path: &Path) -> Result<(), String> {
    let svg = svg.trim();
    if !svg.starts_with("<svg") || !svg.ends_with("</svg>") {
        return Err("the console did not carry a whole SVG document".into());
    }
    std::fs::write(path, format!("{svg}\n")).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_only_the_lines_between_the_markers() {
        let mut c = Capture::default();
        let console = [
            "driver: every frame",
            "MPSAFE-QEMU-FIGURE-BEGIN\r",
            "<svg width=\"1\">",
            "</svg>",
            "MPSAFE-QEMU-FIGURE-END",
            "MPSAFE-QEMU-EXIT 0",
        ];
        let taken: Vec<bool> = console.iter().map(|l| c.feed(l)).collect();
        assert_eq!(taken, [false, true, true, true, true, false]);
        assert_eq!(c.svg().as_deref(), Some("<svg width=\"1\">\n</svg>\n"));
        // Cut off before its end marker: no figure.
        let mut c = Capture::default();
        assert!(c.feed("MPSAFE-QEMU-FIGURE-BEGIN") && c.feed("<svg>"));
        assert_eq!(c.svg(), None);
    }

    #[test]
    fn writes_only_a_whole_document() {
        let dir = std::env::temp_dir().join(format!("xtask-figure-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.svg");
        assert!(write("<svg>\nkernel: oops\n", &path).is_err());
        assert!(!path.exists());
        write("<svg>\n</svg>\n", &path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "<svg>\n</svg>\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
