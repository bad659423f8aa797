use crate::iptables::{test_support::*, *};

#[test]
fn user_chains_inline_with_the_jump_conditions() {
    let rs = save(&filter(
        ":SSH - [0:0]\n\
             :INNER - [0:0]\n\
             -A INPUT -p tcp -m tcp --dport 22 -m comment --comment ssh -j SSH\n\
             -A INPUT -j DROP\n\
             -A SSH -s 10.0.0.0/8 -j ACCEPT\n\
             -A SSH -j INNER\n\
             -A SSH -s 192.168.0.0/16 -m comment --comment home -j ACCEPT\n\
             -A INNER -s 172.16.0.0/12 -j ACCEPT\n",
    ));
    assert_eq!(
        flat(&rs, Table::Filter, Hook::Input),
        [
            f(9, "-p tcp@7 --dport 22@7 -s 10.0.0.0/8@9", "-j ACCEPT"),
            f(12, "-p tcp@7 --dport 22@7 -s 172.16.0.0/12@12", "-j ACCEPT"),
            f(
                11,
                "-p tcp@7 --dport 22@7 -s 192.168.0.0/16@11",
                "-j ACCEPT"
            ),
            // What matches nothing in SSH falls through to here.
            f(8, "", "-j DROP"),
        ]
    );
    let input: Vec<&FlatRule> = rs.chain_rules(Table::Filter, Hook::Input).collect();
    assert_eq!(input[1].via, [7, 10]);
    assert_eq!(input[1].origin(), "line 12 (via line 7, 10)");
    assert_eq!(input[0].comment.as_deref(), Some("ssh"));
    assert_eq!(input[2].comment.as_deref(), Some("home"));
    assert!(rs.unused_chains.is_empty());
}

#[test]
fn return_in_user_chains() {
    // One negatable condition: the rest of the chain gets its negation.
    let rs = save(&filter(
        ":X - [0:0]\n\
             -A INPUT -i eth1 -j X\n\
             -A INPUT -p udp -j ACCEPT\n\
             -A X -s 10.0.0.0/8 -j RETURN\n\
             -A X -p tcp -m tcp --dport 22 -j ACCEPT\n\
             -A X -j DROP\n",
    ));
    assert_eq!(
        flat(&rs, Table::Filter, Hook::Input),
        [
            f(
                9,
                "-i eth1@6 ! -s 10.0.0.0/8@8 -p tcp@9 --dport 22@9",
                "-j ACCEPT"
            ),
            f(10, "-i eth1@6 ! -s 10.0.0.0/8@8", "-j DROP"),
            f(7, "-p udp@7", "-j ACCEPT"),
        ]
    );
    // A negated condition is negated back.
    let rs = save(&filter(
        ":X - [0:0]\n-A INPUT -j X\n-A X ! -i eth0 -j RETURN\n-A X -j DROP\n",
    ));
    assert_eq!(
        flat(&rs, Table::Filter, Hook::Input),
        [f(8, "-i eth0@7", "-j DROP")]
    );
    // As the last rule, RETURN changes nothing; unconditional, it hides
    // the rest of the chain.
    let rs = save(&filter(
        ":X - [0:0]\n\
             -A INPUT -j X\n\
             -A X -s 10.0.0.1/32 -j DROP\n\
             -A X -j RETURN\n\
             -A X -s 10.0.0.2/32 -j DROP\n",
    ));
    assert_eq!(
        flat(&rs, Table::Filter, Hook::Input),
        [f(7, "-s 10.0.0.1@7", "-j DROP")]
    );
    let rs = save(&filter(
        ":X - [0:0]\n-A INPUT -j X\n-A X -s 10.0.0.1/32 -j DROP\n-A X -p tcp -m tcp --dport 1 -j RETURN\n",
    ));
    assert_eq!(
        flat(&rs, Table::Filter, Hook::Input),
        [f(7, "-s 10.0.0.1@7", "-j DROP")]
    );
    // Two conditions would need a disjunction.
    assert_eq!(
        save_error(&filter(
            ":X - [0:0]\n-A INPUT -j X\n-A X -p tcp -m tcp --dport 22 -j RETURN\n-A X -j DROP\n"
        )),
        "rules.v4:7: RETURN with multiple conditions inside chain X is not supported (only \
             as the chain's last rule, or with one condition)"
    );
    assert_eq!(
        save_error(&filter(
            ":X - [0:0]\n-A INPUT -j X\n-A X -m limit -j RETURN\n-A X -j DROP\n"
        )),
        "rules.v4:7: RETURN with -m limit inside chain X is not supported (a rate cannot \
             be negated)"
    );
}

#[test]
fn return_in_a_builtin_chain_applies_its_policy() {
    let rs = save(&filter(
        "-A INPUT -s 10.0.0.0/8 -j RETURN\n-A INPUT -j ACCEPT\n-A OUTPUT -d 10.0.0.0/8 -j RETURN\n-A OUTPUT -j DROP\n",
    ));
    assert_eq!(
        flat(&rs, Table::Filter, Hook::Input),
        [f(5, "-s 10.0.0.0/8@5", "-j DROP"), f(6, "", "-j ACCEPT")]
    );
    assert_eq!(
        flat(&rs, Table::Filter, Hook::Output),
        [f(7, "-d 10.0.0.0/8@7", "-j ACCEPT"), f(8, "", "-j DROP")]
    );
    // Unconditional, it ends the chain.
    let rs = save(&filter("-A INPUT -j RETURN\n-A INPUT -j ACCEPT\n"));
    assert_eq!(flat(&rs, Table::Filter, Hook::Input), [f(5, "", "-j DROP")]);
}

#[test]
fn loops_depth_and_limits_are_errors() {
    assert_eq!(
        save_error(&filter(
            ":A - [0:0]\n:B - [0:0]\n-A INPUT -j A\n-A A -j B\n-A B -s 10.0.0.1/32 -j A\n"
        )),
        "rules.v4:9: chain loop: INPUT -> A -> B -> A"
    );
    assert_eq!(
        save_error(&filter(":A - [0:0]\n-A INPUT -j A\n-A A -j A\n")),
        "rules.v4:7: chain loop: INPUT -> A -> A"
    );
    // A loop nothing reaches is not resolved, as iptables only checks
    // chains reachable from a hook.
    let rs = save(&filter(":A - [0:0]\n-A A -j A\n"));
    assert_eq!(rs.unused_chains.len(), 1);

    let mut body = String::new();
    for i in 0..40 {
        body += &format!(":C{i} - [0:0]\n");
    }
    body += "-A INPUT -j C0\n";
    for i in 0..39 {
        body += &format!("-A C{i} -j C{}\n", i + 1);
    }
    let e = save_error(&filter(&body));
    assert!(e.ends_with("user chains nest deeper than 32"), "{e}");

    assert_eq!(
        save_error(&filter(
            ":X - [0:0]\n-A INPUT -m limit --limit 1/s -j X\n-A X -j ACCEPT\n"
        )),
        "rules.v4:6: -m limit on a jump to X is not supported: inlining the chain would \
             count the rate once per rule in it"
    );
    assert_eq!(
        save_error(&filter(
            ":X - [0:0]\n-A INPUT -i eth0 -j X\n-A INPUT -i eth1 -j X\n-A X -m limit -j ACCEPT\n"
        )),
        "rules.v4:8: -m limit in chain X, which is reached from more than one place \
             (lines 6 and 7): each inlined copy would count its own rate"
    );
    // Reached once, a limit inside a chain is fine.
    let rs = save(&filter(
        ":X - [0:0]\n-A INPUT -i eth0 -j X\n-A X -m limit -j ACCEPT\n",
    ));
    assert_eq!(rs.chain_rules(Table::Filter, Hook::Input).count(), 1);
}
