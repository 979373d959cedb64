//! The `janus-recorder` binary: command-line parsing only; the work lives in the library.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// Every allocation of the binary (see Cargo.toml for why not glibc's).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    /// Show what the running daemon records (rooms, feeds, files, bytes, last error), read
    /// from its metrics endpoint (`[metrics] listen`). Exit 3 if it cannot be reached.
    Status {
        /// The daemon's config file, where `[metrics] listen` says where to ask.
        #[arg(long, default_value = "/etc/janus-recorder/config.toml")]
        config: PathBuf,
    },
    /// List the rooms the running daemon records (from its HTTP API).
    Rooms(janus_recorder::remote::RemoteArgs),
    /// Start recording a room now through the running daemon's API (or stop it with --stop).
    Record {
        /// The Janus server's name (`[janus] name`, default `default`).
        server: String,
        /// The room id.
        room: String,
        /// Stop recording it (its files are finalized).
        #[arg(long)]
        stop: bool,
        /// The room's PIN.
        #[arg(long, env = "JANUS_ROOM_PIN", hide_env_values = true)]
        pin: Option<String>,
        /// Stop by itself after this long (e.g. `2h`).
        #[arg(long)]
        max_duration: Option<String>,
        /// Continue recordings this long in a new part (e.g. `1h`).
        #[arg(long)]
        split_after: Option<String>,
        #[command(flatten)]
        remote: janus_recorder::remote::RemoteArgs,
    },
    /// List recordings, oldest first (from the running daemon's API).
    Recordings {
        /// Only this room.
        #[arg(long)]
        room: Option<String>,
        #[command(flatten)]
        remote: janus_recorder::remote::RemoteArgs,
    },
    /// Print a link to the recordings page that opens one recording or room without a token,
    /// until it expires (signed with `[http] share_key`).
    Share(janus_recorder::share::ShareArgs),
    /// Subscribe to a room's publishers without recording, per feed or grouped (the
    /// subscription-cost benchmark of `scripts/bench.sh`).
    #[command(hide = true)]
    SubscribeProbe(janus_recorder::probe::ProbeArgs),
    /// Print the man page (roff) on stdout; `scripts/deb.sh` packages it.
    #[command(hide = true)]
    Manpage,
    /// Print the completion script for SHELL on stdout (bash, zsh, fish, elvish, powershell).
    #[command(hide = true)]
    Completions { shell: clap_complete::Shell },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a config file as `run` would, starting nothing: exit 0 if it would be
    /// accepted, 2 (with the file, key and problem) if not.
    Check {
        /// Path of the TOML config file.
        #[arg(default_value = "/etc/janus-recorder/config.toml")]
        file: PathBuf,
        /// Do not read secrets from files or the environment (`{ file = .. }`, `{ env = .. }`):
        /// for checking a config outside the unit, whose environment and credentials they
        /// come from (the package's upgrade check does this).
        #[arg(long)]
        skip_secrets: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Run { config } => janus_recorder::service::run(&config),
        Command::Check(args) => janus_recorder::check::run(&args),
        Command::Room(args) => janus_recorder::roomfile::run(&args),
        Command::Publish(args) => janus_recorder::publish::synthetic::run(&args),
        Command::SubscribeProbe(args) => janus_recorder::probe::run(&args),
        Command::Config(ConfigCommand::Check { file, skip_secrets }) => {
            if skip_secrets {
                janus_recorder::secret::unresolved(|| janus_recorder::service::check(&file))
            } else {
                janus_recorder::service::check(&file)
            }
        }
        Command::Status { config } => janus_recorder::status::run(&config),
        Command::Rooms(remote) => janus_recorder::remote::rooms(&remote),
        Command::Record {
            server,
            room,
            stop,
            pin,
            max_duration,
            split_after,
            remote,
        } => {
            let body = serde_json::json!({
                "pin": pin,
                "max_duration": max_duration,
                "split_after": split_after,
            });
            janus_recorder::remote::record(&remote, &server, &room, stop, Some(body))
        }
        Command::Recordings { room, remote } => {
            janus_recorder::remote::recordings(&remote, room.as_deref())
        }
        Command::Share(args) => janus_recorder::share::run(&args),
        Command::Manpage => manpage(),
        Command::Completions { shell } => {
            let mut cli = Cli::command();
            clap_complete::generate(shell, &mut cli, "janus-recorder", &mut std::io::stdout());
            0
        }
    };
    ExitCode::from(code.clamp(0, 255) as u8)
}

/// Writes janus-recorder(1): the top-level page, then a section per subcommand (`config
/// check` included) with its synopsis, description and options, so one page documents all.
fn manpage() -> i32 {
    let cli = Cli::command();
    let mut leaves = Vec::new();
    for sub in cli.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.has_subcommands() {
            for leaf in sub.get_subcommands().filter(|s| !s.is_hide_set()) {
                leaves.push((format!("{} {}", sub.get_name(), leaf.get_name()), leaf));
            }
        } else {
            leaves.push((sub.get_name().to_owned(), sub));
        }
    }
    let mut out = Vec::new();
    let render = |out: &mut Vec<u8>| -> std::io::Result<()> {
        // Man::render would list one page per subcommand, which we do not ship.
        let top = clap_mangen::Man::new(cli.clone());
        top.render_title(out)?;
        top.render_name_section(out)?;
        top.render_synopsis_section(out)?;
        top.render_description_section(out)?;
        top.render_options_section(out)?;
        for (name, cmd) in leaves {
            let cmd = cmd.clone().bin_name(format!("janus-recorder {name}"));
            writeln!(out, ".SH \"JANUS-RECORDER {}\"", name.to_uppercase())?;
            let man = clap_mangen::Man::new(cmd);
            let mut section = Vec::new();
            man.render_synopsis_section(&mut section)?;
            man.render_description_section(&mut section)?;
            man.render_options_section(&mut section)?;
            // Its headings become subsections of this command's section.
            let section = String::from_utf8_lossy(&section).replace(".SH ", ".SS ");
            out.extend_from_slice(section.as_bytes());
        }
        top.render_version_section(out)
    };
    match render(&mut out) {
        Ok(()) => std::io::stdout().write_all(&out).map_or(1, |()| 0),
        Err(e) => {
            eprintln!("cannot render the man page: {e}");
            1
        }
    }
}
