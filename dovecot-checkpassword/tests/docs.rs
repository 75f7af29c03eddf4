//! The README shows the Dovecot 2.4 config the e2e test runs, byte for byte.

#[test]
fn readme_shows_the_tested_dovecot_24_conf() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).expect("README.md");
    let file = "auth-mailtable-lua-2.4.conf.ext";
    let conf = std::fs::read_to_string(format!("{root}/conf/{file}")).expect("conf");
    assert!(
        readme.contains(&format!("```\n{conf}```")),
        "dovecot-checkpassword/README.md must contain conf/{file} verbatim"
    );
}
