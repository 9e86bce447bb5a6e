/// mimalloc: see docs/benchmarks.md (malloc/free were ~8% of the server's CPU per REST read).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    rowcast::cli::main()
}
