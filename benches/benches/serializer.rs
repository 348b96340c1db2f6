//! Serializer benchmarks (filled in with the serializer crate's bench work).
use criterion::{Criterion, criterion_group, criterion_main};
use mpsafe_serializer::Combiner;

fn combiner_uncontended(c: &mut Criterion) {
    let combiner = Combiner::new();
    let mut n = 0u64;
    c.bench_function("combiner/uncontended", |b| {
        b.iter(|| combiner.run(|| n = n.wrapping_add(1)))
    });
}

criterion_group!(benches, combiner_uncontended);
criterion_main!(benches);
