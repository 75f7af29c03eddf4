//! Every TOML snippet in the READMEs is a valid mailtable config: parsed
//! with the same code the binaries use, unknown keys refused. The other
//! snippets (smtpd.conf, Dovecot) are files the e2e tests run as shipped;
//! `table-proc/tests/docs.rs` and `dovecot-checkpassword/tests/docs.rs`
//! check the READMEs show them byte for byte.

use mailtable_core::Config;

fn toml_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match &mut current {
            None if line.trim_start() == "```toml" => current = Some(String::new()),
            Some(b) if line.trim_start() == "```" => {
                blocks.push(std::mem::take(b));
                current = None;
            }
            Some(b) => {
                b.push_str(line);
                b.push('\n');
            }
            None => {}
        }
    }
    blocks
}

#[test]
fn readme_toml_snippets_are_valid_configs() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let mut seen = 0;
    for file in [
        "README.md",
        "dovecot-checkpassword/README.md",
        "docs/import.md",
    ] {
        let text = std::fs::read_to_string(format!("{root}/{file}")).expect(file);
        for block in toml_blocks(&text) {
            if let Err(e) = Config::parse(&block) {
                panic!("{file}: snippet does not parse as a mailtable config: {e}\n{block}");
            }
            seen += 1;
        }
    }
    assert!(
        seen >= 2,
        "expected the README's config snippets, found {seen}"
    );
}

#[test]
fn shipped_example_config_is_valid() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let path = format!("{root}/dovecot-checkpassword/conf/mailtable.toml");
    Config::load(std::path::Path::new(&path)).expect("conf/mailtable.toml");
}
