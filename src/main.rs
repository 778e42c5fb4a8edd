// glibc malloc was a fifth of rekindle's CPU at 32,000 hosts (BENCHMARKS.md,
// scale): thousands of SSH sessions allocate small buffers from many threads.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    rekindle::run(std::env::args_os())
}
