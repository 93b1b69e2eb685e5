//! `cleave`: the modular monolith, a module run alone, or the gateway, depending on features
//! and configuration. Everything is in the library; this only runs the CLI.

pub fn main() -> std::process::ExitCode {
    fix_the_allocators_mmap_threshold();
    cleave::cli::main()
}

/// Allocations of 4 MiB and more get memory of their own from the system, given back when freed.
///
/// glibc raises its mmap threshold to the size of any large block freed (up to 32 MiB) and its
/// trim threshold to twice that, per arena. One Argon2 buffer (19 MiB) freed was enough for
/// every thread's arena to keep up to 38 MiB it no longer used: a few bursts of logins took
/// the process from 25 MB to 690 MB, and a mixed load kept growing. A fixed threshold turns the
/// dynamic adjustment off (docs/operations.md, "Memory"; measured in docs/benchmarks.md). It
/// takes precedence over `MALLOC_MMAP_THRESHOLD_` or `GLIBC_TUNABLES` in the environment.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn fix_the_allocators_mmap_threshold() {
    const MMAP_THRESHOLD_BYTES: libc::c_int = 4 * 1024 * 1024;
    // SAFETY: mallopt only changes the allocator's parameters; it is called before any other
    // thread exists, takes plain integers and touches no memory of ours.
    #[allow(unsafe_code)]
    let changed = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) };
    if changed != 1 {
        // Logging is not set up yet; the process works, only with glibc's dynamic threshold.
        eprintln!("warning: the allocator refused a fixed mmap threshold; memory may grow under load");
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn fix_the_allocators_mmap_threshold() {}
