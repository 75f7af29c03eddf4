//! The package's documentation stays in step with the code: every config
//! key the code accepts is in `mailtable.toml(5)` (in its section) and in
//! the shipped `/etc/mail/mailtable.toml`, every CLI subcommand is in the
//! generated `mailtable(8)`, every service the table registers is in
//! `table-mailtable(8)`, and the shipped config parses.

use std::path::Path;

fn read(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The text of `.SH` section `heading` (up to the next `.SH`).
fn section<'a>(page: &'a str, heading: &str) -> &'a str {
    let start = page
        .find(&format!(".SH {heading}\n"))
        .unwrap_or_else(|| panic!("no section {heading:?}"));
    let rest = &page[start + 4..];
    match rest.find("\n.SH ") {
        Some(end) => &rest[..end],
        None => rest,
    }
}

#[test]
fn config_keys_are_found() {
    let keys = mailtable_packaging::config_keys();
    for k in ["database", "serve", "table.auth", "serve.http_listen"] {
        assert!(keys.iter().any(|x| x == k), "{k} missing from {keys:?}");
    }
}

#[test]
fn every_config_key_is_in_mailtable_toml_5() {
    let page = read("man/mailtable.toml.5");
    for key in mailtable_packaging::config_keys() {
        let (heading, name) = match key.split_once('.') {
            Some(("table", k)) => ("[table] SECTION", k),
            Some(("serve", k)) => ("[serve] SECTION", k),
            Some((s, _)) => panic!("section [{s}] has no heading in mailtable.toml(5)"),
            None => ("TOP-LEVEL KEYS", key.as_str()),
        };
        assert!(
            section(&page, heading).contains(&format!(".TP\n.B {name}\n")),
            "mailtable.toml(5) does not describe {key} under {heading}"
        );
    }
}

#[test]
fn shipped_config_parses_and_names_every_key() {
    let text = read("debian/mailtable.toml");
    mailtable_core::Config::parse(&text).expect("the shipped config parses");
    // Uncommented: the file with every comment mark before a key removed
    // (`#uid = 5000`, not `# prose`) is a complete, valid config.
    let uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase()) => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let full = mailtable_core::Config::parse(&uncommented).expect("uncommented config parses");
    assert_eq!(full.serve.workers, 4);
    for key in mailtable_packaging::config_keys() {
        let name = key.rsplit('.').next().unwrap_or(&key);
        let shown = if key == "table" || key == "serve" {
            uncommented.contains(&format!("[{name}]"))
        } else {
            uncommented
                .lines()
                .any(|l| l.starts_with(&format!("{name} =")))
        };
        assert!(shown, "debian/mailtable.toml does not show {key}");
    }
}

#[test]
fn every_subcommand_is_in_mailtable_8() {
    let mut page = Vec::new();
    mailtable_packaging::render_mailtable_8(&mut page).expect("render");
    let page = String::from_utf8(page).expect("utf-8");
    let paths = mailtable_packaging::subcommand_paths(&mailtable_packaging::cli_command());
    for top in ["init", "migrate", "user", "alias", "resolve", "import"] {
        assert!(paths.iter().any(|p| p == &[top]), "{top} missing");
    }
    let commands = section(&page, "COMMANDS");
    for path in paths {
        let title = format!(".SS \"{}", path.join(" ").replace('-', "\\-"));
        assert!(commands.contains(&title), "mailtable(8) lacks {title}");
    }
    assert!(page.contains(".TH mailtable 8"), "title");
    // The CLI's own description, not this package's.
    assert!(page.contains("mailtable admin CLI"), "description");
    assert!(page.contains(".SH EXIT STATUS"));
}

#[test]
fn completions_name_the_subcommands() {
    for (shell, _) in mailtable_packaging::SHELLS {
        let mut out = Vec::new();
        mailtable_packaging::render_completion(shell, &mut out);
        let text = String::from_utf8(out).expect("utf-8");
        for word in ["resolve", "senders", "password-stdin"] {
            assert!(text.contains(word), "{shell:?} completion lacks {word}");
        }
    }
}

#[test]
fn every_registered_table_service_is_in_table_mailtable_8() {
    use table_mailtable::answer::Tables;
    use table_mailtable::Handler;
    let page = read("man/table-mailtable.8");
    // auth = true registers the optional service too.
    let config = mailtable_core::Config::parse("[table]\nauth = true\n");
    let services = Tables::new(config).services();
    assert!(services.len() >= 7);
    for s in services {
        assert!(
            page.contains(&format!(".TP\n.B {}\n", s.name())),
            "table-mailtable(8) does not describe the {} service",
            s.name()
        );
    }
}
