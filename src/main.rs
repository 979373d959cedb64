//! The `janus-recorder` binary: command-line parsing only; the work lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "janus-recorder",
    version,
    about = "Records Janus VideoRoom rooms into per-feed WebM files, and relays them"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the recorder service.
    Run {
        /// Path of the TOML config file.
        #[arg(long, default_value = "/etc/janus-recorder/config.toml")]
        config: PathBuf,
    },
    /// Check that recordings play.
    Check(janus_recorder::check::CheckArgs),
    /// Put a room's recordings into one Matroska file (and optionally a composite video).
    Room(janus_recorder::roomfile::RoomArgs),
    /// Publish a WebM clip into a room as one or more synthetic publishers (load tests).
    Publish(janus_recorder::publish::synthetic::PublishArgs),
    /// Work with the config file.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a config file as `run` would, starting nothing: exit 0 if it would be
    /// accepted, 2 (with the file, key and problem) if not.
    Check {
        /// Path of the TOML config file.
        #[arg(default_value = "/etc/janus-recorder/config.toml")]
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Run { config } => janus_recorder::service::run(&config),
        Command::Check(args) => janus_recorder::check::run(&args),
        Command::Room(args) => janus_recorder::roomfile::run(&args),
        Command::Publish(args) => janus_recorder::publish::synthetic::run(&args),
        Command::Config(ConfigCommand::Check { file }) => janus_recorder::service::check(&file),
    };
    ExitCode::from(code.clamp(0, 255) as u8)
}
