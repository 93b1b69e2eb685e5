//! Closed-loop load for the benchmarks: a number of callers, each making one call after another
//! for a fixed time after a warm-up, and what they measured.

use std::future::Future;
use std::time::{Duration, Instant};

/// What a run measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figures {
    pub calls_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

/// Runs `callers` tasks, each calling `call` one call after another: for `warm_up` unrecorded,
/// then for `measure`, recording each call's latency.
///
/// # Panics
/// When a caller task panics (a call that fails should panic in `call`).
pub async fn closed_loop<F, Fut>(callers: usize, warm_up: Duration, measure: Duration, call: F) -> Figures
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let run = |until: Instant, record: bool| {
        let call = call.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < until {
                let started = Instant::now();
                call().await;
                if record {
                    latencies.push(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX));
                }
            }
            latencies
        })
    };
    let warm_until = Instant::now() + warm_up;
    for task in (0..callers).map(|_| run(warm_until, false)).collect::<Vec<_>>() {
        task.await.expect("a caller");
    }
    let started = Instant::now();
    let until = started + measure;
    let mut latencies = Vec::new();
    for task in (0..callers).map(|_| run(until, true)).collect::<Vec<_>>() {
        latencies.extend(task.await.expect("a caller"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1))] as f64 / 1000.0;
    Figures { calls_per_sec: latencies.len() as f64 / elapsed, p50_us: at(0.50), p99_us: at(0.99) }
}
