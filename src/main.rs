//! The `tollgate` command line: run, check, hash-password, gen-secret, gen-key.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};

/// mimalloc: the proxy allocates and frees many small buffers per request (headers, bodies,
/// futures); a thread-caching allocator spends less time there than glibc's. Its 2.x line
/// (the crate's `v2` feature), not 3.x: Rust asks for every block with its alignment, and
/// 3.x serves an aligned request over 1 KiB whose size class is not a power of two by
/// over-allocating, and returned the empty page of such blocks to its arena after every
/// request with a body (benches/README.md, "The allocator").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "tollgate",
    version,
    about = "OAuth 2.0 gateway: a reverse proxy that checks bearer tokens, and the server that issues them"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Configuration file (for `tollgate` without a subcommand).
    #[arg(short, long, default_value = "gateway.toml", global = true)]
    config: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Start the gateway (the default).
    Run,
    /// Validate the configuration and print the route table.
    Check,
    /// Read a password on stdin and print its argon2id PHC string.
    HashPassword,
    /// Print a new client secret and the secret_hash to put in [[clients]].
    GenSecret,
    /// Make a signing key for JWT access tokens ([oauth] signing_key): PKCS#8 PEM.
    GenKey {
        /// es256 (ECDSA P-256) or eddsa (Ed25519).
        #[arg(long, default_value = "es256", value_parser = ["es256", "eddsa"])]
        alg: String,
        /// Write the key to this new file (mode 0600) instead of printing it.
        #[arg(short, long)]
        out: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => tollgate::cli::run(&cli.config),
        Command::Check => tollgate::cli::check(&cli.config),
        Command::HashPassword => tollgate::cli::hash_password(),
        Command::GenSecret => tollgate::cli::gen_secret(),
        Command::GenKey { alg, out } => tollgate::cli::gen_key(&alg, out.as_deref()),
    }
}
