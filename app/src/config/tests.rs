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
        jail.create_file("tls.toml", "[modules.users]\nurl = \"https://users\"\n")?;
        assert!(Settings::load(Some(Path::new("tls.toml"))).is_err());
        jail.create_file("open.toml", "[server]\ninternal_addr = \"127.0.0.1:9000\"\n")?;
        assert!(Settings::load(Some(Path::new("open.toml"))).is_err(), "an internal listener needs a service token");
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
