//! Password hashing: Argon2id with OWASP's recommended parameters (19 MiB, 2 passes, 1 lane),
//! on a fixed pool of worker threads that each reuse one working-memory buffer.
//!
//! **Invariant:** the memory hashing takes is bounded by the pool, not by the load: there are
//! [`worker_count`] workers (two per core), and each reuses one 19 MiB buffer for every hash
//! while jobs keep coming, giving it back after [`KEEP_MEMORY_IDLE`] without one. Allocating it
//! per hash, on the runtime's blocking threads, let the allocator keep every thread's arena: a
//! few bursts of logins took a process from 25 MB to 690 MB. A flood queues for a worker (at
//! most [`QUEUE_WAIT`]), then gets 503 with `Retry-After`.

use argon2::password_hash::phc::{Output, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use shared_kernel::ApiError;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::Duration;

/// How long a hash may wait for a free worker before the caller gets 503.
const QUEUE_WAIT: Duration = Duration::from_secs(5);
/// How long a worker keeps its working memory without a job. Allocating it again costs about a
/// millisecond against tens for a hash, so a busy worker keeps it and an idle one gives it back.
const KEEP_MEMORY_IDLE: Duration = Duration::from_secs(5);
/// The working memory of one hash, in KiB (each [`Block`] is 1 KiB).
const MEMORY_KIB: u32 = 19 * 1024;
const PASSES: u32 = 2;
const LANES: u32 = 1;
const OUTPUT_LEN: usize = 32;

/// Workers in the pool: two per core, the most that may hash at once.
#[must_use]
pub fn worker_count() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get() * 2)
}

/// A hash or a verification, run on a worker with its buffer.
type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// The jobs waiting for a worker (never more than there are workers: see `HashingPool::permits`).
#[derive(Default)]
struct Queue {
    jobs: Mutex<VecDeque<Job>>,
    job_added: Condvar,
}

struct HashingPool {
    /// One permit per running worker, held by a job until a worker has run it (or dropped it):
    /// the queue never holds more jobs than there are workers, even when callers go away, and
    /// waiting happens here, in order, bounded by [`QUEUE_WAIT`].
    permits: Arc<tokio::sync::Semaphore>,
    queue: Arc<Queue>,
    workers: usize,
}

impl HashingPool {
    fn start(workers: usize, keep_memory_idle: Duration) -> Self {
        let queue = Arc::new(Queue::default());
        let mut started = 0;
        for index in 0..workers {
            let queue = queue.clone();
            match std::thread::Builder::new().name(format!("argon2-{index}")).spawn(move || work(&queue, keep_memory_idle)) {
                Ok(_) => started += 1,
                Err(error) => tracing::error!(%error, "cannot start a password hashing worker"),
            }
        }
        Self { permits: Arc::new(tokio::sync::Semaphore::new(started)), queue, workers: started }
    }

    /// Runs `job` on a worker and returns its answer.
    ///
    /// # Errors
    /// 503 when no worker frees up within [`QUEUE_WAIT`]; 500 when the pool is broken.
    async fn run<T: Send + 'static>(&self, job: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static) -> Result<T, ApiError> {
        if self.workers == 0 {
            tracing::error!("no password hashing worker is running");
            return Err(ApiError::Internal);
        }
        let permit = match tokio::time::timeout(QUEUE_WAIT, self.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            _ => return Err(ApiError::unavailable("the server is busy; try again shortly", 2)),
        };
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |memory| {
            // A caller that went away (a client gone, a request timeout) needs no answer.
            if !answer.is_closed() {
                let _ = answer.send(job(memory));
            }
            drop(permit);
        });
        self.queue.jobs.lock().unwrap_or_else(PoisonError::into_inner).push_back(job);
        self.queue.job_added.notify_one();
        answered.await.map_err(|_| {
            tracing::error!("a password hashing worker stopped during a job");
            ApiError::Internal
        })
    }
}

/// A worker: takes jobs in order, keeps its working memory while jobs keep coming, and gives it
/// back after `keep_memory_idle` without one, so an idle process is as small as one that never
/// hashed.
fn work(queue: &Queue, keep_memory_idle: Duration) {
    let mut memory: Vec<Block> = Vec::new();
    loop {
        let mut jobs = queue.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        let job = loop {
            if let Some(job) = jobs.pop_front() {
                break job;
            }
            if memory.is_empty() {
                jobs = queue.job_added.wait(jobs).unwrap_or_else(PoisonError::into_inner);
            } else {
                let (guard, waited) = queue.job_added.wait_timeout(jobs, keep_memory_idle).unwrap_or_else(PoisonError::into_inner);
                jobs = guard;
                if waited.timed_out() && jobs.is_empty() {
                    memory = Vec::new();
                }
            }
        };
        drop(jobs);
        // A panicking job must not take the worker with it.
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut memory))).is_err() {
            tracing::error!("a password hashing job panicked");
        }
    }
}

fn pool() -> &'static HashingPool {
    static POOL: OnceLock<HashingPool> = OnceLock::new();
    POOL.get_or_init(|| HashingPool::start(worker_count(), KEEP_MEMORY_IDLE))
}

/// The largest parameters a stored hash may ask for: four times our memory, five times our
/// passes, four lanes. Anything beyond is treated as a malformed hash rather than run (a corrupt
/// or planted row must not take a worker, or the process's memory, hostage).
const MAX_STORED_MEMORY_KIB: u32 = 4 * MEMORY_KIB;
const MAX_STORED_PASSES: u32 = 5 * PASSES;
const MAX_STORED_LANES: u32 = 4;

/// Hashes into `out` with `memory`, growing it to what `params` need (our own parameters fit the
/// buffer a worker keeps).
fn hash_into(memory: &mut Vec<Block>, argon2: &Argon2<'_>, password: &[u8], salt: &[u8], out: &mut [u8]) -> Result<(), String> {
    let needed = argon2.params().block_count();
    if memory.len() < needed {
        memory.try_reserve_exact(needed - memory.len()).map_err(|error| error.to_string())?;
        memory.resize(needed, Block::default());
    }
    argon2.hash_password_into_with_memory(password, salt, out, &mut memory[..needed]).map_err(|error| error.to_string())
}

fn our_params() -> Params {
    Params::new(MEMORY_KIB, PASSES, LANES, Some(OUTPUT_LEN)).unwrap_or_default()
}

fn hash_with(memory: &mut Vec<Block>, password: &[u8]) -> Result<String, String> {
    let params = our_params();
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let salt = Salt::generate();
    let mut out = [0u8; OUTPUT_LEN];
    hash_into(memory, &argon2, password, &salt, &mut out)?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: (&params).try_into().map_err(|error: argon2::password_hash::Error| error.to_string())?,
        salt: Some(salt),
        hash: Some(Output::new(&out).map_err(|error| error.to_string())?),
    };
    Ok(hash.to_string())
}

/// Whether `password` matches the PHC string `stored`, with the parameters `stored` names.
fn verify_with(memory: &mut Vec<Block>, password: &[u8], stored: &str) -> Result<bool, String> {
    let parsed = PasswordHash::new(stored).map_err(|error| error.to_string())?;
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return Err("the stored hash has no salt or no output".into());
    };
    let algorithm = Algorithm::try_from(parsed.algorithm.as_str()).map_err(|error| error.to_string())?;
    let version = parsed.version.map_or(Ok(Version::V0x13), Version::try_from).map_err(|error| error.to_string())?;
    let params = Params::try_from(&parsed).map_err(|error| error.to_string())?;
    if params.m_cost() > MAX_STORED_MEMORY_KIB || params.t_cost() > MAX_STORED_PASSES || params.p_cost() > MAX_STORED_LANES {
        return Err(format!(
            "the stored hash asks for m={}, t={}, p={}, beyond what this server runs",
            params.m_cost(),
            params.t_cost(),
            params.p_cost()
        ));
    }
    let argon2 = Argon2::new(algorithm, version, params);
    let mut out = vec![0u8; expected.len()];
    hash_into(memory, &argon2, password, salt, &mut out)?;
    // `Output`'s equality is constant-time.
    Ok(Output::new(&out).map_err(|error| error.to_string())? == *expected)
}

/// Hashes a password into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`).
///
/// # Errors
/// 503 when no hashing worker frees up in time.
pub async fn hash(password: String) -> Result<String, ApiError> {
    pool().run(move |memory| hash_with(memory, password.as_bytes())).await?.map_err(|error| {
        tracing::error!(%error, "password hashing failed");
        ApiError::Internal
    })
}

/// Whether `password` matches `stored`. A malformed stored hash is a mismatch (and logged).
///
/// # Errors
/// 503 when no hashing worker frees up in time.
pub async fn verify(password: String, stored: String) -> Result<bool, ApiError> {
    let verdict = pool().run(move |memory| verify_with(memory, password.as_bytes(), &stored)).await?;
    Ok(verdict.unwrap_or_else(|error| {
        tracing::error!(%error, "a stored password hash is malformed");
        false
    }))
}

/// Spends the time of one verification against a hash nobody has, so a login for an unknown
/// email takes as long as one with a wrong password (no account enumeration by timing).
pub async fn verify_against_dummy(password: String) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let dummy = match DUMMY.get() {
        Some(dummy) => dummy.clone(),
        // Kept only once made: a busy pool must not leave an empty dummy that answers at once.
        None => match hash("dummy password for timing".to_owned()).await {
            Ok(made) => DUMMY.get_or_init(|| made).clone(),
            Err(_) => return,
        },
    };
    let _ = verify(password, dummy).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, PasswordVerifier};

    #[tokio::test]
    async fn hashes_are_argon2id_with_owasp_parameters_and_verify() {
        let stored = hash("correct horse battery staple".to_owned()).await.unwrap();
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{stored}");
        assert!(verify("correct horse battery staple".to_owned(), stored.clone()).await.unwrap());
        assert!(!verify("wrong horse battery staple".to_owned(), stored).await.unwrap());
        assert!(!verify("anything".to_owned(), "not a hash".to_owned()).await.unwrap());
    }

    #[tokio::test]
    async fn hashes_agree_with_the_reference_implementation_both_ways() {
        // Ours verifies with the argon2 crate's own verifier, and one it made verifies with ours
        // (including other parameters, as an older stored hash may have).
        let ours = hash("a password of ours".to_owned()).await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        Argon2::default().verify_password(b"a password of ours", &parsed).unwrap();

        let params = Params::new(8 * 1024, 3, 1, None).unwrap();
        let theirs: PasswordHash = Argon2::new(Algorithm::Argon2id, Version::V0x13, params).hash_password(b"their password").unwrap();
        assert!(verify("their password".to_owned(), theirs.to_string()).await.unwrap());
        assert!(!verify("not their password".to_owned(), theirs.to_string()).await.unwrap());
    }

    #[tokio::test]
    async fn a_flood_waits_for_the_workers_and_every_answer_is_right() {
        let stored = hash("flood password".to_owned()).await.unwrap();
        let attempts: Vec<_> = (0..worker_count() * 3)
            .map(|n| {
                let stored = stored.clone();
                let password = if n % 2 == 0 { "flood password" } else { "wrong password" };
                tokio::spawn(async move { (n % 2 == 0, verify(password.to_owned(), stored).await.unwrap()) })
            })
            .collect();
        for attempt in attempts {
            let (expected, verdict) = attempt.await.unwrap();
            assert_eq!(verdict, expected);
        }
    }

    #[tokio::test]
    async fn a_hash_stored_before_the_pool_still_verifies() {
        // Made by another implementation (the reference C one, through Python's argon2-cffi) with
        // our parameters: the format of every hash stored so far.
        let stored = "$argon2id$v=19$m=19456,t=2,p=1$cQ5LKcec8xbWD4Rw0Iqbsw$7A82PSnyMP8EXTjqI9EKSG/1lp1GTlezVTHDNvYhRE8";
        assert!(verify("correct horse battery staple".to_owned(), stored.to_owned()).await.unwrap());
        assert!(!verify("correct horse battery stapler".to_owned(), stored.to_owned()).await.unwrap());
    }

    #[tokio::test]
    async fn a_stored_hash_asking_for_too_much_is_a_mismatch_not_a_hostage() {
        let huge = "$argon2id$v=19$m=4194304,t=2,p=1$cQ5LKcec8xbWD4Rw0Iqbsw$7A82PSnyMP8EXTjqI9EKSG/1lp1GTlezVTHDNvYhRE8";
        assert!(!verify("correct horse battery staple".to_owned(), huge.to_owned()).await.unwrap());
    }

    #[tokio::test]
    async fn a_caller_that_goes_away_keeps_its_place_until_a_worker_drops_its_job() {
        let pool = Arc::new(HashingPool::start(1, Duration::from_secs(5)));
        // One more permit than workers, so that a second job can wait in the queue.
        pool.permits.add_permits(1);
        let (started, running) = tokio::sync::oneshot::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let blocker = tokio::spawn({
            let pool = pool.clone();
            async move {
                pool.run(move |_| {
                    let _ = started.send(());
                    let _ = released.recv();
                })
                .await
            }
        });
        running.await.unwrap();
        let abandoned = tokio::time::timeout(Duration::from_millis(50), pool.run(|_| panic!("ran for a caller that left"))).await;
        assert!(abandoned.is_err(), "the job waits behind the blocker");
        assert_eq!(pool.permits.available_permits(), 0, "the abandoned job still holds its place in the queue");
        release.send(()).unwrap();
        blocker.await.unwrap().unwrap();
        assert_eq!(pool.run(|_| 7).await.unwrap(), 7, "the worker skipped the abandoned job and goes on");
        // The worker gives a job's permit back just after it sends the result: wait for it.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while pool.permits.available_permits() != 2 {
            assert!(tokio::time::Instant::now() < deadline, "every permit comes back: {}", pool.permits.available_permits());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[test]
    fn a_worker_reuses_its_memory_instead_of_allocating_per_hash() {
        let mut memory = Vec::new();
        let stored = hash_with(&mut memory, b"first").unwrap();
        let buffer = memory.as_ptr();
        assert_eq!(memory.len() * Block::SIZE, 19 * 1024 * 1024);
        assert!(verify_with(&mut memory, b"first", &stored).unwrap());
        hash_with(&mut memory, b"second").unwrap();
        assert_eq!(memory.as_ptr(), buffer, "the working memory was allocated again");
    }

    /// How much working memory the worker that runs this holds.
    async fn held(pool: &HashingPool) -> usize {
        pool.run(|memory: &mut Vec<Block>| memory.len()).await.unwrap()
    }

    #[tokio::test]
    async fn a_busy_worker_keeps_its_memory_and_an_idle_one_gives_it_back() {
        let pool = HashingPool::start(1, Duration::from_secs(1));
        assert_eq!(held(&pool).await, 0, "a worker allocates nothing before its first hash");
        pool.run(|memory| hash_with(memory, b"busy").unwrap()).await.unwrap();
        assert_eq!(held(&pool).await, 19 * 1024, "the next job finds the buffer");
        // Each look is a job, so the looks are spaced wider than the idle time.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            if held(&pool).await == 0 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "an idle worker never gave its buffer back");
        }
    }
}
