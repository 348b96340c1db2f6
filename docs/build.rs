//! Renders each chapter into `OUT_DIR` with its benchmark figures filled in
//! from `RESULTS.md` (a link to `benches/RESULTS.md`), so the guide never
//! quotes a figure the results file does not hold. See `render.rs`.

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
