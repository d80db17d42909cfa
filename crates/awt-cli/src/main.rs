//! `awt`: adversarially robust sparse networks from the command line.
//!
//! Only this binary prints, installs the tracing subscriber (filter from `AWT_LOG`) and draws
//! progress bars; the library crates stay silent.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod args;
mod commands;
mod counts;
mod device_check;
mod dynamics;
mod eval;
mod files;
mod ntk;
mod output;
mod parse;
mod provenance;
mod prune;
mod prune_sap;
mod ticket;
mod train;
mod train_args;

use clap::error::{ContextKind, ContextValue, ErrorKind};

/// Help and version go to stdout as clap renders them; a usage error becomes one line naming the
/// flag and the cause (`error: --arch: unknown architecture ...`), exit status 2.
fn usage_error(e: clap::Error) -> ! {
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit()
    }
    let flag = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => s.split_whitespace().next().map(str::to_string),
        _ => None,
    };
    let line = match (e.kind(), flag, std::error::Error::source(&e)) {
        (ErrorKind::ValueValidation, Some(flag), Some(cause)) => format!("{flag}: {cause}"),
        _ => {
            // The first line, and when it ends with a colon the lines it introduces (the missing
            // arguments), up to the usage text.
            let text = e.to_string();
            let mut lines = text.lines();
            let mut line = lines.next().unwrap_or_default().trim_start_matches("error: ").to_string();
            if line.ends_with(':') {
                let more: Vec<&str> =
                    lines.map(str::trim).take_while(|l| !l.starts_with("Usage:")).filter(|l| !l.is_empty()).collect();
                line = format!("{line} {}", more.join(", "));
            }
            line
        }
    };
    eprintln!("error: {line}");
    std::process::exit(2)
}

// candle allocates a fresh buffer per tensor op; glibc's malloc hands large ones back to the OS, so
// each op paid its page faults again (see docs/performance.md). mimalloc keeps and reuses them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[allow(unsafe_code)]
fn main() {
    // SAFETY: first statement of main; no other thread exists yet.
    unsafe { awt_base::pin_candle_threads() };
    awt_base::keep_freed_memory();
    let filter = tracing_subscriber::EnvFilter::try_from_env("AWT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let cli = match parse::parse_args(std::env::args().collect()) {
        Ok(c) => c,
        Err(e) => usage_error(e),
    };
    if let Err(e) = cli.and_then(commands::run) {
        // A reader that went away (`awt inspect m | head -1`) is not an error: stop quietly.
        if e.downcast_ref::<output::StdoutError>().is_some_and(output::StdoutError::is_broken_pipe) {
            std::process::exit(0);
        }
        // One line: the cause chain joined, so scripts can grep it and users see the root cause.
        let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
        eprintln!("error: {}", chain.join(": "));
        std::process::exit(1);
    }
}
