fn main() -> std::process::ExitCode {
    rowcast::cli::main()
}
