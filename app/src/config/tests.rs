//! The loader: defaults, a file, the environment, and what it refuses.

use super::*;

#[test]
fn defaults_are_valid_and_match_the_documentation() {
    let settings = Settings::default();
    settings.validate().unwrap();
    assert_eq!(settings.server.addr.to_string(), "127.0.0.1:8080");
    assert_eq!(settings.server.body_limit_bytes, 2 * 1024 * 1024);
    assert_eq!(settings.auth.access_token_ttl_secs, 900);
}

#[test]
fn a_file_then_the_environment_override_defaults() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("custom.toml", "data_dir = \"/tmp/x\"\n[server]\naddr = \"0.0.0.0:9000\"\n")?;
        jail.set_env("CLEAVE_SERVER__REQUEST_TIMEOUT_SECS", "7");
        let settings = Settings::load(Some(Path::new("custom.toml"))).map_err(|e| e.to_string())?;
        assert_eq!(settings.server.addr.port(), 9000);
        assert_eq!(settings.server.request_timeout_secs, 7);
        assert_eq!(settings.data_dir, PathBuf::from("/tmp/x"));
        Ok(())
    });
}

#[test]
fn unknown_keys_and_bad_ttls_are_errors() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("bad.toml", "[server]\nadress = \"x\"\n")?;
        assert!(Settings::load(Some(Path::new("bad.toml"))).is_err());
        jail.create_file("ttl.toml", "[auth]\naccess_token_ttl_secs = 3600\n")?;
        assert!(Settings::load(Some(Path::new("ttl.toml"))).is_err());
        jail.create_file("sqlite.toml", "[database]\nurl = \"sqlite://one.db\"\n")?;
        assert!(Settings::load(Some(Path::new("sqlite.toml"))).is_err());
        jail.create_file("scheme.toml", "[modules.users]\nurl = \"ftp://users\"\n")?;
        assert!(Settings::load(Some(Path::new("scheme.toml"))).is_err());
        jail.create_file("half.toml", "[tls]\nca_file = \"ca.pem\"\n")?;
        assert!(Settings::load(Some(Path::new("half.toml"))).is_err(), "the TLS files go together");
        jail.create_file("refresh.toml", "[auth]\nrefresh_token_ttl_secs = 18446744073709551615\n")?;
        assert!(Settings::load(Some(Path::new("refresh.toml"))).is_err());
        assert!(Settings::load(Some(Path::new("missing.toml"))).is_err());
        Ok(())
    });
}

#[test]
fn nats_settings_take_several_urls_and_refuse_what_cannot_work() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("CLEAVE_NATS__URL", "nats://a:4222, nats://b:4222");
        jail.set_env("CLEAVE_MODULES__PAYMENTS__WIRE", "nats");
        let settings = Settings::load(None).expect("valid");
        assert_eq!(settings.nats.options("cleave").unwrap().urls, ["nats://a:4222", "nats://b:4222"]);
        assert_eq!(settings.modules.payments.wire, Wire::Nats);
        assert_eq!((settings.modules.users.wire, settings.nats.subject_prefix.as_str()), (Wire::Http, "cleave"));
        jail.set_env("CLEAVE_MODULES__PAYMENTS__WIRE", "carrier-pigeon");
        assert!(Settings::load(None).is_err(), "an unknown wire");
        jail.set_env("CLEAVE_MODULES__PAYMENTS__WIRE", "http");
        jail.set_env("CLEAVE_NATS__URL", "http://a:4222");
        assert!(Settings::load(None).is_err(), "not a NATS URL");
        jail.set_env("CLEAVE_NATS__URL", " , ");
        assert!(Settings::load(None).is_err(), "no URL at all");
        jail.set_env("CLEAVE_NATS__URL", "nats://a:4222");
        jail.set_env("CLEAVE_NATS__USER", "cleave");
        assert!(Settings::load(None).is_err(), "a user without a password");
        jail.set_env("CLEAVE_NATS__PASSWORD", "secret");
        jail.set_env("CLEAVE_NATS__SUBJECT_PREFIX", "two.tokens");
        assert!(Settings::load(None).is_err(), "a prefix is one subject token");
        jail.set_env("CLEAVE_NATS__SUBJECT_PREFIX", "staging");
        assert_eq!(Settings::load(None).expect("valid").nats.subject_prefix, "staging");
        Ok(())
    });
}

/// A process that serves or calls an internal wire starts only with its identity and TLS (what
/// `cleave trust init` writes), unless the development setting says otherwise; `cargo run`
/// (no wire) needs nothing.
#[test]
fn a_wire_needs_identity_and_tls_unless_development() {
    Settings::default().validate_wire_security().expect("the monolith needs nothing");
    let open = |change: fn(&mut Settings)| {
        let mut settings = Settings::default();
        change(&mut settings);
        settings
    };
    let wires: [fn(&mut Settings); 3] = [
        |s| s.server.internal_addr = Some("127.0.0.1:9000".parse().unwrap()),
        |s| s.modules.users.url = Some("https://users:9000".into()),
        |s| s.nats.url = Some("nats://127.0.0.1:4222".into()),
    ];
    for wire in wires {
        let error = open(wire).validate_wire_security().unwrap_err().to_string();
        assert!(error.contains("cleave trust init"), "{error}");
        let mut development = open(wire);
        development.server.allow_unauthenticated_internal = true;
        development.validate_wire_security().expect("development may");
    }
    // With a kind's env file from `cleave trust init`, each wire passes; a plain http:// module
    // URL does not.
    let temp = tempfile::tempdir().unwrap();
    crate::trust::init(temp.path(), &crate::trust::InitOptions::default()).unwrap();
    let env = crate::trust::read_env(&temp.path().join("orders.env")).unwrap();
    for wire in wires {
        open(wire).with_env_pairs(&env).unwrap().validate_wire_security().expect("the trust files suffice");
    }
    let plain = open(|s| s.modules.users.url = Some("http://users:9000".into())).with_env_pairs(&env).unwrap();
    assert!(plain.validate_wire_security().unwrap_err().to_string().contains("https://"));
}
