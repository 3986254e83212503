//! Unit tests of the redaction rules: each built-in kind on real log shapes, what must stay.

use super::*;

fn all() -> Redactor {
    let names: Vec<String> = builtin_names().map(str::to_owned).collect();
    Redactor::new(&names, &[]).unwrap()
}

fn text(s: &str) -> String {
    all().apply(s).text
}

#[test]
fn addresses_are_masked_and_times_and_code_paths_stay() {
    assert_eq!(
        text("Accepted password for bob from 10.1.2.3 port 22 at 12:34:56"),
        "Accepted password for <user> from <ip> port 22 at 12:34:56"
    );
    assert_eq!(
        text("mail to ops.team+x@plant-3.example.com failed"),
        "mail to <email> failed"
    );
    assert_eq!(
        text("link aa:bb:cc:dd:ee:0f up, peer fe80::1 and 2001:db8:0:0:1:0:0:1"),
        "link <mac> up, peer <ip> and <ip>"
    );
    assert_eq!(text("std::vector in Foo::bar"), "std::vector in Foo::bar");
}

#[test]
fn credentials_serials_and_user_names_in_common_shapes() {
    assert_eq!(
        text("GET https://admin:s3cr3t@historian.local/api failed"),
        "GET https://<credentials>@historian.local/api failed"
    );
    assert_eq!(
        text("mqtt://plc7@broker:1883 down"),
        "mqtt://<credentials>@broker:1883 down"
    );
    assert_eq!(
        text("drive S/N: WX41A1234567 and serial number 88-1234-AB, IMEI 356938035643809"),
        "drive S/N: <serial> and serial number <serial>, IMEI <serial>"
    );
    assert_eq!(
        text("pam_unix(sshd:session): session opened for user alice by (uid=0)"),
        "pam_unix(sshd:session): session opened for user <user> by (uid=0)"
    );
    assert_eq!(
        text("Invalid user test9 from 1.2.3.4; login: mallory; user=eve; /home/carol/.ssh"),
        "Invalid user <user> from <ip>; login: <user>; user=<user>; /home/<user>/.ssh"
    );
    assert_eq!(
        text("authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=h"),
        "authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=h"
    );
}

#[test]
fn replacements_are_counted_by_kind_and_are_deterministic() {
    let r = all().apply("user bob from 10.0.0.1 and 10.0.0.2, mail bob@x.io");
    assert_eq!(r.counts, vec![("email", 1), ("ip", 2), ("user", 1)]);
    assert_eq!(
        r,
        all().apply("user bob from 10.0.0.1 and 10.0.0.2, mail bob@x.io")
    );
    assert!(all().apply("nothing personal here").counts.is_empty());
}

#[test]
fn config_patterns_add_rules_and_builtins_can_be_left_out() {
    let r = Redactor::new(&["email".into()], &[r"badge=\S+".into()]).unwrap();
    let out = r.apply("badge=4711 from 10.0.0.1 (a@b.io)");
    assert_eq!(out.text, "<redacted> from 10.0.0.1 (<email>)");
    assert_eq!(out.counts, vec![("email", 1), (CUSTOM_KIND, 1)]);
    assert!(matches!(
        Redactor::new(&["phone".into()], &[]),
        Err(RedactError::UnknownBuiltin(_))
    ));
    assert!(matches!(
        Redactor::new(&[], &["(".into()]),
        Err(RedactError::Pattern { .. })
    ));
}

#[test]
fn long_lines_are_capped_on_a_char_boundary() {
    let r = Redactor::new(&[], &[]).unwrap();
    let out = r.exemplar(&"é".repeat(400)).text;
    assert!(out.len() <= MAX_EXEMPLAR_BYTES, "{}", out.len());
    assert!(out.ends_with('…'));
    assert_eq!(r.exemplar("short").text, "short");
    assert!(r.template_text(&"x".repeat(600)).len() <= MAX_TEMPLATE_TEXT_BYTES);
}
