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
/// 2 MiB page. With thousands of sessions opening and closing, plain 4 KiB
/// pages (zeroed only where used) cut peak memory by 30 % at 32,000 hosts;
/// CPU stayed within noise (BENCHMARKS.md, 5c).
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and changes
    // nothing but this process's page-fault policy; failure is harmless.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}
