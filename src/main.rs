fn main() -> std::process::ExitCode {
    rekindle::run(std::env::args_os())
}
