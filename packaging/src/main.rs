//! `mailtable-gen-docs OUTDIR`: write `OUTDIR/man/mailtable.8` and the bash,
//! zsh and fish completions of `mailtable` into `OUTDIR/completions/`.
//! packaging/deb.sh runs it before cargo-deb; nothing of it is installed.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

fn run(outdir: PathBuf) -> std::io::Result<()> {
    let man = outdir.join("man");
    let completions = outdir.join("completions");
    fs::create_dir_all(&man)?;
    fs::create_dir_all(&completions)?;
    let mut page = BufWriter::new(File::create(man.join("mailtable.8"))?);
    mailtable_packaging::render_mailtable_8(&mut page)?;
    page.flush()?;
    for (shell, name) in mailtable_packaging::SHELLS {
        let mut f = BufWriter::new(File::create(completions.join(name))?);
        mailtable_packaging::render_completion(shell, &mut f);
        f.flush()?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(outdir), None) = (args.next(), args.next()) else {
        eprintln!("usage: mailtable-gen-docs OUTDIR");
        return ExitCode::from(2);
    };
    match run(PathBuf::from(outdir)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mailtable-gen-docs: {e}");
            ExitCode::FAILURE
        }
    }
}
