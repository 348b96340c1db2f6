//! Renders each chapter into `OUT_DIR` with its benchmark figures filled in
//! from `RESULTS.md` (a link to `benches/RESULTS.md`), so the guide never
//! quotes a figure the results file does not hold. See `render.rs`.
//!
//! A `{{figure:NAME}}` line becomes `figures/NAME.svg` as an image with the
//! SVG inside it (a base64 `data:` URI): rustdoc copies no files of ours to
//! the output, and docs.rs serves only what rustdoc writes, so the picture
//! travels inside the page.

#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

#[path = "render.rs"]
mod render;

use std::path::Path;
use std::{env, fs};

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = env::var_os("OUT_DIR").expect("cargo sets OUT_DIR");
    let out = Path::new(&out);
    let results_path = dir.join("RESULTS.md");
    println!("cargo:rerun-if-changed=RESULTS.md");
    println!("cargo:rerun-if-changed=chapters");
    println!("cargo:rerun-if-changed=render.rs");
    println!("cargo:rerun-if-changed=figures");
    let text = fs::read_to_string(&results_path)
        .unwrap_or_else(|e| panic!("{}: {e}", results_path.display()));
    let results = render::parse(&text);

    let mut chapters: Vec<_> = fs::read_dir(dir.join("chapters"))
        .expect("docs/chapters")
        .map(|e| e.expect("a chapter").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    chapters.sort();
    for path in chapters {
        let chapter =
            fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let (rendered, unresolved) = render::render(&chapter, &results);
        let rendered = figures(&rendered, &dir.join("figures"), &path);
        for u in unresolved {
            // Rendered as a visible marker; tests/honest.rs fails on it.
            println!(
                "cargo:warning={}: `{{{{{}}}}}` is not in RESULTS.md",
                path.display(),
                u.placeholder
            );
        }
        let name = path.file_name().expect("a file name");
        fs::write(out.join(name), rendered).expect("write the rendered chapter");
    }
}

/// Replaces each `{{figure:NAME}}` with an `<img>` of `figures/NAME.svg`.
/// A missing figure fails the build: a chapter never shows a broken image.
fn figures(chapter: &str, dir: &Path, path: &Path) -> String {
    let mut out = String::with_capacity(chapter.len());
    let mut rest = chapter;
    while let Some(start) = rest.find("{{figure:") {
        let Some(len) = rest[start..].find("}}") else {
            break;
        };
        let name = &rest[start + "{{figure:".len()..start + len];
        let file = dir.join(format!("{name}.svg"));
        let svg = fs::read(&file).unwrap_or_else(|e| {
            panic!(
                "{}: {{{{figure:{name}}}}}: {}: {e}",
                path.display(),
                file.display()
            )
        });
        out.push_str(&rest[..start]);
        out.push_str(&format!(
            "<img src=\"data:image/svg+xml;base64,{}\" alt=\"figure {name}: figures/{name}.svg\" style=\"width: 100%; max-width: 1200px; background: white\">",
            base64(&svg)
        ));
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

/// Standard base64 with padding (RFC 4648), for the `data:` URI.
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                s.push(char::from(ABC[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                s.push('=');
            }
        }
    }
    s
}
