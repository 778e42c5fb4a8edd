//! `rekindle validate PLAYBOOK... [-i INV]`: every problem of every file, then
//! a verdict per file. Exit 0 valid (warnings allowed), 1 invalid, 2 when a
//! file cannot be read at all.

use std::fmt::Write as _;

use crate::cli::{DiagFormat, ValidateArgs};
use crate::diag::{self, Diagnostic, Sources, Verdict, verdict};
use crate::exit::Exit;

pub fn execute(args: ValidateArgs) -> anyhow::Result<Exit> {
    let mut sources = Sources::new();
    let mut diags: Vec<Diagnostic> = Vec::new();
    let mut verdicts = String::new();
    let mut unreadable = false;
    let mut invalid = false;

    let inventory = if args.inventories.is_empty() {
        None
    } else {
        let (inv, found) = match crate::inventory::load(&args.inventories, &mut sources) {
            Ok((inv, warnings)) => (Some(inv), warnings),
            Err(errors) => (None, errors),
        };
        let name = args.inventories.join(", ");
        let verdict = verdict(&found);
        unreadable |= verdict == Verdict::Unreadable;
        invalid |= verdict == Verdict::Invalid;
        let _ = writeln!(verdicts, "{name}: {}", verdict.describe(&found));
        diags.extend(found);
        inv
    };

    for path in &args.playbooks {
        let found = match crate::playbook::load(path, inventory.as_ref(), &mut sources) {
            Ok((_, warnings)) => warnings,
            Err(errors) => errors,
        };
        let verdict = verdict(&found);
        unreadable |= verdict == Verdict::Unreadable;
        invalid |= verdict == Verdict::Invalid;
        let _ = writeln!(verdicts, "{path}: {}", verdict.describe(&found));
        diags.extend(found);
    }

    let out = match args.format {
        DiagFormat::Text => diag::render_text(&sources, &diags) + &verdicts,
        DiagFormat::Json => diag::render_json(&diags),
        DiagFormat::Github => diag::render_github(&diags),
        DiagFormat::Sarif => diag::render_sarif(&diags),
    };
    print!("{out}");
    Ok(if unreadable {
        Exit::Usage
    } else if invalid {
        Exit::Failures
    } else {
        Exit::Success
    })
}
