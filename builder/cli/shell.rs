//! `clawimg completions SHELL` and `clawimg man`: generated from the clap definitions, so
//! they always match the commands this binary has.

use super::args::Cli;
use crate::error::{Context, Result};
use clap::CommandFactory;

/// Print the completion script for `shell`.
pub(super) fn completions(shell: clap_complete::Shell) -> Result<i32> {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "clawimg", &mut std::io::stdout());
    Ok(0)
}

/// Print the man page (section 1, roff) of clawimg and every subcommand.
pub(super) fn man() -> Result<i32> {
    let mut out = Vec::new();
    page(&Cli::command(), &mut out)?;
    std::io::Write::write_all(&mut std::io::stdout(), &out).ctx(|| "write the man page".into())?;
    Ok(0)
}

/// One page for the whole tool: clawimg's own page, then a section per subcommand with its
/// synopsis, description and options (one `man clawimg` shows everything).
fn page(cmd: &clap::Command, out: &mut Vec<u8>) -> Result<()> {
    let man = clap_mangen::Man::new(cmd.clone());
    man.render(out).ctx(|| "render the man page".into())?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        sub_section(cmd.get_name(), sub, out)?;
    }
    Ok(())
}

fn sub_section(parent: &str, sub: &clap::Command, out: &mut Vec<u8>) -> Result<()> {
    let name = format!("{parent} {}", sub.get_name());
    // A subcommand's own page rendered without its title block: its sections become part
    // of the tool's page under a heading with the full command.
    let mut one = Vec::new();
    let m = clap_mangen::Man::new(sub.clone().bin_name(&name));
    m.render_name_section(&mut one)
        .and_then(|_| m.render_synopsis_section(&mut one))
        .and_then(|_| m.render_description_section(&mut one))
        .and_then(|_| m.render_options_section(&mut one))
        .ctx(|| format!("render the man page of {name}"))?;
    let text = String::from_utf8_lossy(&one)
        .replace(".SH NAME", &format!(".SH \"{}\"", name.to_uppercase()))
        .replace(".SH SYNOPSIS", ".SS Synopsis")
        .replace(".SH DESCRIPTION", ".SS Description")
        .replace(".SH OPTIONS", ".SS Options");
    out.extend_from_slice(text.as_bytes());
    for s in sub.get_subcommands().filter(|s| s.get_name() != "help") {
        sub_section(&name, s, out)?;
    }
    Ok(())
}
