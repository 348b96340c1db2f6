//! TCP over two adapters joined by an in-memory cable (see `common`): a
//! bulk transfer and concurrent connections in both directions, every byte
//! checked end to end, every buffer back in the pool, within a deadline.

#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]
#![cfg(not(mpsafe_loom))]

mod common;

use std::time::Duration;

use common::{CableConfig, Flow, run, scale};

/// The deadline of each run: a failure, never a sleep.
const LIMIT: Duration = Duration::from_secs(240);

fn print(name: &str, r: &common::Report) {
    println!(
        "{name}: {} bytes in {:.3} s = {:.1} Mbit/s; wire lost {}+{}, input drops {}+{} frames, \
         oactive {}+{}, restarts {}+{}, transmit refused (queue full) {}+{}, replies dropped {}+{}",
        r.bytes,
        r.elapsed.as_secs_f64(),
        r.mbit_per_s(),
        r.wire[0].lost.load(std::sync::atomic::Ordering::Relaxed),
        r.wire[1].lost.load(std::sync::atomic::Ordering::Relaxed),
        r.wire[0]
            .frames_dropped
            .load(std::sync::atomic::Ordering::Relaxed),
        r.wire[1]
            .frames_dropped
            .load(std::sync::atomic::Ordering::Relaxed),
        r.oactive_sets[0],
        r.oactive_sets[1],
        r.wire[0]
            .restarts
            .load(std::sync::atomic::Ordering::Relaxed),
        r.wire[1]
            .restarts
            .load(std::sync::atomic::Ordering::Relaxed),
        r.dev[0].tx_queue_full,
        r.dev[1].tx_queue_full,
        r.dev[0].replies_dropped,
        r.dev[1].replies_dropped,
    );
}

/// The size of the bulk transfer in MiB: `MPSAFE_SMOLTCP_MIB`, default 16.
fn bulk_mib() -> u64 {
    std::env::var("MPSAFE_SMOLTCP_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16)
}

/// The wire's loss per 10,000 frames for the bulk run:
/// `MPSAFE_SMOLTCP_LOSS`, default 20 (0.2%).
fn bulk_loss() -> u64 {
    std::env::var("MPSAFE_SMOLTCP_LOSS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}

#[test]
fn bulk_transfer_arrives_exactly_once_in_order() {
    let bytes = scale(bulk_mib() << 20);
    let cfg = CableConfig {
        loss_per_10k: bulk_loss(),
        ..CableConfig::default()
    };
    let flow = Flow {
        from: 0,
        port: 5000,
        bytes,
    };
    let r = run(&[flow], cfg, LIMIT);
    print("bulk", &r);
    if cfg.loss_per_10k > 0 {
        // The wire lost frames, so TCP had to recover.
        assert!(r.wire[0].lost.load(std::sync::atomic::Ordering::Relaxed) > 0);
    }
}

#[test]
fn concurrent_connections_in_both_directions() {
    let bytes = scale(2 << 20);
    let flows = [
        Flow {
            from: 0,
            port: 6000,
            bytes,
        },
        Flow {
            from: 0,
            port: 6001,
            bytes,
        },
        Flow {
            from: 1,
            port: 6002,
            bytes,
        },
        Flow {
            from: 1,
            port: 6003,
            bytes,
        },
        Flow {
            from: 1,
            port: 6004,
            bytes: bytes / 3,
        },
    ];
    let r = run(&flows, CableConfig::default(), LIMIT);
    print("concurrent", &r);
    assert!(r.wire[0].lost.load(std::sync::atomic::Ordering::Relaxed) > 0);
    assert!(r.wire[1].lost.load(std::sync::atomic::Ordering::Relaxed) > 0);
}

/// A send queue and tx ring of 2 frames: the send queue is full most of
/// the time, so `transmit` refuses, the doorbell is marked, and only the
/// driver's restart (tx completion clearing `oactive`) wakes the poll loop
/// again. TCP still delivers every byte, and no slot or buffer is lost.
#[test]
fn a_full_send_queue_wakes_the_poll_loop_on_room() {
    let cfg = CableConfig {
        send_queue: 2,
        tx_ring: 2,
        loss_per_10k: 0,
        ..CableConfig::default()
    };
    let bytes = scale(4 << 20);
    let flows = [
        Flow {
            from: 0,
            port: 7000,
            bytes,
        },
        Flow {
            from: 1,
            port: 7001,
            bytes,
        },
    ];
    let r = run(&flows, cfg, LIMIT);
    print("full send queue", &r);
    assert!(
        r.dev[0].tx_queue_full + r.dev[1].tx_queue_full > 0,
        "the send queue never filled"
    );
    assert!(
        r.oactive_sets[0] + r.oactive_sets[1] > 0,
        "the tx ring never filled"
    );
}

/// smoltcp's own token handling with some tokens dropped unconsumed on the
/// way (1 in 100): a dropped receive pair loses its frame (TCP
/// retransmits), a dropped transmit token loses nothing, and at the end
/// every buffer is back in the pool and no slot is still promised (`run`
/// checks both).
#[test]
fn tokens_dropped_under_a_real_stack_lose_no_buffer() {
    let cfg = CableConfig {
        drop_token_every: 100,
        loss_per_10k: 0,
        ..CableConfig::default()
    };
    let bytes = scale(4 << 20);
    let flows = [
        Flow {
            from: 0,
            port: 8000,
            bytes,
        },
        Flow {
            from: 1,
            port: 8001,
            bytes: bytes / 4,
        },
    ];
    let r = run(&flows, cfg, LIMIT);
    print("dropped tokens", &r);
    for d in &r.dev {
        assert!(d.rx_tokens_dropped > 0 && d.tx_tokens_dropped > 0, "{d:?}");
    }
}
