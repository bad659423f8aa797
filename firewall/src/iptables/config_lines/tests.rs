use crate::iptables::{keys::toml_str, test_support::*};

#[test]
fn iptables_lines_in_a_config_give_iptables_verdicts_on_probe_packets() {
    // The same rules as commands, in a config whose interfaces are wan
    // (so no lan default stands in for a policy).
    let rs = save(ROUND_TRIP);
    let mut lines = vec![
        "-P INPUT DROP".to_string(),
        "-P FORWARD DROP".to_string(),
        "-N LOGDROP".to_string(),
    ];
    lines.extend(
        ROUND_TRIP
            .lines()
            .filter(|l| l.starts_with("-A"))
            .map(str::to_string),
    );
    let entries: Vec<String> = lines
        .iter()
        .map(|l| format!("  {},\n", toml_str(l)))
        .collect();
    let text = format!(
        "iptables = [\n{}]\n\n[[interface]]\nname = \"eth0\"\nrole = \"wan\"\n\n\
             [[interface]]\nname = \"eth1\"\nrole = \"wan\"\n",
        entries.concat()
    );
    let config = crate::config::parse(&text, "fw.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_same_meaning(&rs, &config, &text);
}
