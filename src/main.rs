// glibc malloc was a fifth of rekindle's CPU at 32,000 hosts (BENCHMARKS.md,
// scale): thousands of SSH sessions allocate small buffers from many threads.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    disable_transparent_huge_pages();
    rekindle::run(std::env::args_os())
}

/// mimalloc asks for transparent huge pages, and returns idle memory to the
/// kernel after a second: every later reuse then faults in and zeroes a whole
/// 2 MiB page. With thousands of sessions opening and closing that was a
/// tenth of rekindle's CPU and a third of its memory (BENCHMARKS.md, scale).
/// Plain 4 KiB pages are zeroed only where they are used.
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and changes
    // nothing but this process's page-fault policy; failure is harmless.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}
