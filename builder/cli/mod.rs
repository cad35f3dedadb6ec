//! Command line interface: [`args`] holds the clap types; each command is one function
//! (in the file named after it) that calls one operation and prints its result.

mod args;
mod audit;
mod build;
mod cache;
mod diff;
mod flash;
mod images;
mod init;
mod inspect;
mod lock;
mod seal;
mod shell;
mod test;
mod upload;
mod verify;

pub use args::Cli;

use crate::build::BuildOptions;
use crate::error::Result;
use crate::support::exec;
use args::{CacheCmd, Cmd, Global, ImagesCmd, ProfileArgs, SecretsCmd};
use clap::Parser;

/// Parse arguments and run; returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    exec::set_verbose(cli.global.verbose);
    exec::set_timings(cli.global.timings || cli.global.verbose);
    exec::epoch();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

/// Build options from the global flags and a profile's arguments.
fn options(g: &Global, p: &ProfileArgs) -> BuildOptions {
    BuildOptions {
        profile: p.profile.clone(),
        profiles_dir: g.profiles_dir.clone(),
        out_dir: g.out.clone(),
        cache_dir: cache_dir(g),
        vars: p.vars.clone(),
        sets: p.sets.clone(),
        mirror: p.mirror.clone().filter(|m| !m.is_empty()),
        quiet: g.quiet,
        registry_mirrors: g.registry_mirrors.clone(),
        locked: false,
    }
}

/// `--cache-dir`, else the default cache directory.
fn cache_dir(g: &Global) -> std::path::PathBuf {
    g.cache_dir
        .clone()
        .unwrap_or_else(crate::build::default_cache_dir)
}

/// Run one command; returns the exit code.
fn run(cli: Cli) -> Result<i32> {
    let g = cli.global;
    match cli.command {
        Cmd::Check { p, json } => build::check(&g, &p, json),
        Cmd::Build { p, locked, json } => build::build(&g, &p, locked, json),
        Cmd::Init(a) => init::init(&g, a),
        Cmd::Completions { shell } => shell::completions(shell),
        Cmd::Man => shell::man(),
        Cmd::Inspect {
            image,
            json,
            explain,
        } => inspect::inspect(&image, json, explain.as_deref()),
        Cmd::Test(t) => test::test(&g, t),
        Cmd::Flash {
            image,
            to,
            yes,
            secrets,
            node,
        } => flash::flash(&g, &image, &to, yes, secrets.zip(node)),
        Cmd::Upload(a) => upload::upload(&g, a),
        Cmd::Verify {
            image,
            against,
            json,
        } => verify::verify(&image, &against, json),
        Cmd::Seal(a) => seal::seal(a),
        Cmd::Secrets(SecretsCmd::Template { profile }) => seal::template(&g, &profile),
        Cmd::Secrets(SecretsCmd::Bundle {
            image,
            secrets,
            node,
            output,
        }) => seal::bundle(&image, &secrets, node.as_deref(), &output),
        Cmd::Audit { image, secrets } => audit::audit(&image, secrets.as_deref()),
        Cmd::Lock {
            p,
            update,
            images_only,
            packages_only,
        } => lock::lock(&g, &p, update, images_only, packages_only),
        Cmd::Diff {
            a,
            b,
            max_files,
            json,
        } => diff::diff(&a, &b, max_files, json),
        Cmd::Cache(CacheCmd::Du) => cache::du(&g),
        Cmd::Cache(CacheCmd::Gc { keep }) => cache::gc(&g, keep),
        Cmd::Images(ImagesCmd::Pull(p)) => images::pull(&g, &p),
        Cmd::Images(ImagesCmd::Import { archive }) => images::import(&g, &archive),
    }
}
