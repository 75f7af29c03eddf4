//! The README shows the smtpd config the e2e tests run, byte for byte.

#[test]
fn readme_shows_the_tested_smtpd_confs() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).expect("README.md");
    for file in ["smtpd.conf", "smtpd-submission.conf"] {
        let conf = std::fs::read_to_string(format!("{root}/table-proc/conf/{file}")).expect("conf");
        assert!(
            readme.contains(&format!("```\n{conf}```")),
            "README.md must contain table-proc/conf/{file} verbatim"
        );
    }
}
