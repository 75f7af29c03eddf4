//! dovecot-mailtable(8) (packaging/man/dovecot-mailtable.8, hand-written
//! because the parser is private to the binary) describes every subcommand
//! and every option that the binary's own `--help` lists.

use std::process::Command;

#[test]
fn man_page_covers_every_subcommand_and_option() {
    let out = Command::new(env!("CARGO_BIN_EXE_dovecot-mailtable"))
        .arg("--help")
        .output()
        .expect("run dovecot-mailtable --help");
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).expect("utf-8 help");
    let page_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../packaging/man/dovecot-mailtable.8"
    );
    let page = std::fs::read_to_string(page_path).expect("read dovecot-mailtable.8");

    let mut block = "";
    let (mut commands, mut options) = (Vec::new(), Vec::new());
    for line in help.lines() {
        if !line.starts_with(' ') {
            block = line;
            continue;
        }
        let first = line.split_whitespace().next().unwrap_or("");
        match block {
            "Commands:" if first != "help" => commands.push(first.to_string()),
            "Options:" => {
                if let Some(long) = line.split_whitespace().find(|w| w.starts_with("--")) {
                    options.push(long.trim_end_matches(',').to_string());
                }
            }
            _ => {}
        }
    }
    assert!(commands.contains(&"serve".to_string()), "help: {help}");
    assert!(!options.is_empty(), "help: {help}");
    for c in commands {
        assert!(
            page.contains(&format!(".TP\n.B {}\n", c.replace('-', "\\-"))),
            "dovecot-mailtable(8) does not describe the {c} command"
        );
    }
    for o in options {
        assert!(
            page.contains(&o.replace('-', "\\-")),
            "dovecot-mailtable(8) does not describe {o}"
        );
    }
}
