use super::*;

#[test]
fn words_split_like_iptables_restore() {
    let w = |s: &str| tokenize(s).unwrap();
    assert_eq!(
        w(r#"-m comment --comment "ssh in" -j ACCEPT"#),
        ["-m", "comment", "--comment", "ssh in", "-j", "ACCEPT"]
    );
    assert_eq!(w(r#"--comment "a\\b \"c\"""#), ["--comment", r#"a\b "c""#]);
    assert_eq!(w(r#"--comment """#), ["--comment", ""]);
    assert_eq!(w("--comment 'it is'"), ["--comment", "it is"]);
    // A quote continues a word it starts in, and ends the word.
    assert_eq!(w(r#"ab"c d"e"#), ["abc d", "e"]);
    assert_eq!(w("  -A\tINPUT  "), ["-A", "INPUT"]);
    assert_eq!(
        tokenize(r#"--comment "open"#),
        Err("unterminated quote (\")".into())
    );
    assert_eq!(
        tokenize("--comment 'open"),
        Err("unterminated quote (')".into())
    );
}
