//! The librdkafka configuration of every Kafka client the worker makes, the producer and a
//! consumer task's reader alike: the role's defaults, the security settings the worker derives
//! (MSK IAM's mechanism turned into OAUTHBEARER over TLS, the system CA bundle for TLS), then
//! every `FLEETLOAD_KAFKA_*` property the user gave. One path for both roles, so a consumer
//! reaches every cluster a producer reaches. Also the one message a rejected configuration
//! gets (property names only: values may be secrets).

use std::collections::BTreeMap;

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::KafkaError;
use rdkafka::producer::BaseProducer;
use rdkafka::types::RDKafkaConfRes;

use super::msk_iam::MECHANISM as MSK_IAM;
use crate::model::input::{is_secret_name, redact_values, ScenarioError, REDACTED};

/// Settings the worker chooses unless the user set them (`FLEETLOAD_KAFKA_*` always wins).
const DEFAULTS: &[(&str, &str)] = &[
    // A message undelivered after 30 s is a failure worth reporting, not something to wait
    // librdkafka's default 5 minutes for.
    ("message.timeout.ms", "30000"),
    ("linger.ms", "5"),
    // The local queue bounds the worker's memory when the brokers fall behind: a 0.25 vCPU /
    // 512 MiB Fargate task must be enough, and the worker stays within 64 MiB at 100k
    // events/s. 50,000 messages or 8 MiB of them (whichever comes first) is still 50 ms at
    // 1M messages/s, more than linger.ms and a broker round trip hold in flight.
    ("queue.buffering.max.messages", "50000"),
    ("queue.buffering.max.kbytes", "8192"),
];

/// The configuration of task `task_id`'s producer.
pub(crate) fn client_config(properties: &BTreeMap<String, String>, task_id: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (k, v) in DEFAULTS {
        config.set(*k, *v);
    }
    shared(&mut config, properties, task_id);
    config
}

/// The configuration of consumer task `task_id`'s reader: the same security settings and
/// user properties as a producer's, then the reader's own settings, set last because the exact
/// count depends on them. The reader is given its partitions and commits nothing (see
/// `worker::consume::kafka`); `group` (the run's, `fleetload-<run id>`) is only the id
/// librdkafka needs to assign partitions: no member ever joins it.
pub(crate) fn consumer_config(
    properties: &BTreeMap<String, String>,
    task_id: &str,
    group: &str,
) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("auto.offset.reset", "earliest");
    shared(&mut config, properties, task_id);
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    config
}

/// What every client gets, whatever its role: its id, the security settings derived from the
/// properties, and the properties themselves (which win over any default).
fn shared(config: &mut ClientConfig, properties: &BTreeMap<String, String>, task_id: &str) {
    config.set("client.id", format!("fleetload-{task_id}"));
    let msk_iam = uses_msk_iam(properties);
    if msk_iam && !properties.contains_key("security.protocol") {
        // MSK's IAM listeners are TLS only (port 9098).
        config.set("security.protocol", "SASL_SSL");
    }
    if uses_tls(properties, msk_iam)
        && !properties.contains_key("ssl.ca.location")
        && !properties.contains_key("ssl.ca.pem")
    {
        // OpenSSL is linked statically, so its compiled-in CA directory is not the system's:
        // librdkafka's probe finds the system bundle (/etc/ssl/certs/ca-certificates.crt in
        // the image), which verifies MSK's and Confluent Cloud's public certificates.
        config.set("ssl.ca.location", "probe");
    }
    for (k, v) in properties {
        if msk_iam && is_mechanism_key(k) {
            config.set(k, "OAUTHBEARER");
        } else {
            config.set(k, v);
        }
    }
}

/// Whether a configuration made by [`client_config`] or [`consumer_config`] connects over TLS.
pub(crate) fn is_tls(config: &ClientConfig) -> bool {
    config
        .get("security.protocol")
        .is_some_and(|p| p.to_ascii_uppercase().ends_with("SSL"))
}

fn is_mechanism_key(name: &str) -> bool {
    name == "sasl.mechanism" || name == "sasl.mechanisms"
}

/// Whether the properties select Amazon MSK IAM authentication
/// (`FLEETLOAD_KAFKA_SASL_MECHANISM=AWS_MSK_IAM`).
pub(crate) fn uses_msk_iam(properties: &BTreeMap<String, String>) -> bool {
    properties
        .iter()
        .any(|(k, v)| is_mechanism_key(k) && v.trim().eq_ignore_ascii_case(MSK_IAM))
}

/// Whether the connection to the brokers is TLS (`SSL`, `SASL_SSL`).
fn uses_tls(properties: &BTreeMap<String, String>, msk_iam: bool) -> bool {
    match properties.get("security.protocol") {
        Some(p) => p.to_ascii_uppercase().ends_with("SSL"),
        None => msk_iam,
    }
}

/// Kafka's own answer to `acks`: librdkafka takes any number from -1 to 1000 (a leftover of old
/// brokers), which a broker then refuses at the first produce request.
const ACKS_ACCEPTED: &[&str] = &["all", "-1", "0", "1"];

/// The worker variable that sets librdkafka property `property` (the name as the scenario
/// shows it: upper-cased, dots as underscores).
pub(crate) fn variable_name(property: &str) -> String {
    format!(
        "FLEETLOAD_KAFKA_{}",
        property.to_ascii_uppercase().replace('.', "_")
    )
}

/// Checks every property the user gave the way librdkafka will take them, without connecting:
/// each one set on its own (so the refusal names the variable that was typed, not an internal
/// alias such as `queue.buffering.max.ms` for `linger.ms`), then the whole configuration
/// turned into a client with no bootstrap servers (which checks the properties against each
/// other, e.g. a SASL mechanism librdkafka does not support, and opens no connection). Values
/// quoted back are the user's own, and secrets among them are redacted.
pub(crate) fn check_properties(
    properties: &BTreeMap<String, String>,
    secrets: &[String],
    files: Files,
) -> Result<(), ScenarioError> {
    let accepted =
        |p: &str| format!("a value librdkafka accepts for {p} (see librdkafka's CONFIGURATION.md)");
    for (property, value) in properties {
        let name = variable_name(property);
        if matches!(property.as_str(), "acks" | "request.required.acks")
            && !ACKS_ACCEPTED.contains(&value.trim().to_ascii_lowercase().as_str())
        {
            return Err(ScenarioError::invalid(
                &name,
                value,
                "not an acknowledgement level Kafka brokers accept",
                "all, -1, 0 or 1",
            ));
        }
        let mut one = ClientConfig::new();
        one.set(property, value);
        if let Err(e) = one.create_native_config() {
            return Err(match e {
                KafkaError::ClientConfig(RDKafkaConfRes::RD_KAFKA_CONF_UNKNOWN, ..) => {
                    ScenarioError::invalid(
                        &name,
                        value,
                        format!("{property} is not a librdkafka property"),
                        "FLEETLOAD_KAFKA_<PROPERTY> for a property of librdkafka's CONFIGURATION.md, upper-cased with dots as underscores",
                    )
                }
                KafkaError::ClientConfig(_, desc, ..) => ScenarioError::invalid(
                    &name,
                    value,
                    redact_values(&own_names(&desc, property, value), secrets),
                    accepted(property),
                ),
                other => ScenarioError::invalid(
                    &name,
                    value,
                    redact_values(&other.to_string(), secrets),
                    accepted(property),
                ),
            });
        }
    }
    // After each property on its own (a mistyped one is named first), before the whole.
    check_sasl_has_a_sasl_protocol(properties, secrets)?;
    let mut all = client_config(properties, "validation");
    all.remove("bootstrap.servers");
    if files == Files::InTheTask {
        // The files are read when the client is created; they need only exist where the
        // task runs (inside its container on ECS), not on the launcher's machine.
        for property in FILE_PROPERTIES {
            all.remove(property);
        }
    }
    all.set_log_level(RDKafkaLogLevel::Emerg);
    if let Err(e) = all.create::<BaseProducer>() {
        let text = match e {
            KafkaError::ClientCreation(text) => text,
            other => other.to_string(),
        };
        return Err(ScenarioError::invalid(
            "FLEETLOAD_KAFKA_*",
            // A non-secret value may equal a secret one (a mechanism named like the password).
            &redact_values(&shown_properties(properties), secrets),
            redact_values(text.trim(), secrets),
            "properties that librdkafka accepts together (see librdkafka's CONFIGURATION.md)",
        ));
    }
    Ok(())
}

/// SASL settings take effect only with a SASL `security.protocol`: without one librdkafka
/// ignores them and connects in plain text or plain TLS, which a SASL listener refuses only once
/// the preflight has waited out its time. Refused at once instead, naming the setting (the
/// mechanism first when there is one).
fn check_sasl_has_a_sasl_protocol(
    properties: &BTreeMap<String, String>,
    secrets: &[String],
) -> Result<(), ScenarioError> {
    let sasl: Vec<&String> = properties
        .keys()
        .filter(|k| k.starts_with("sasl."))
        .collect();
    let Some(first) = sasl
        .iter()
        .find(|k| is_mechanism_key(k))
        .or_else(|| sasl.first())
    else {
        return Ok(());
    };
    let protocol = match properties.get("security.protocol") {
        Some(p) => p.trim().to_string(),
        // MSK IAM's listeners are SASL over TLS: chosen for it when not given.
        None if uses_msk_iam(properties) => return Ok(()),
        None => "PLAINTEXT (the default)".to_string(),
    };
    if protocol.to_ascii_uppercase().starts_with("SASL_") {
        return Ok(());
    }
    Err(ScenarioError::invalid(
        &variable_name(first),
        &redact_values(&properties[*first], secrets),
        format!(
            "a SASL setting, but security.protocol is {protocol}: librdkafka would not use it \
             and the brokers would not be asked to authenticate"
        ),
        "FLEETLOAD_KAFKA_SECURITY_PROTOCOL=SASL_SSL (or SASL_PLAINTEXT) with SASL settings, or \
         no SASL settings",
    ))
}

/// Where the files that properties name (CA, certificate, key, keystore) are read: here, or
/// only where the task runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Files {
    /// On this machine: the worker itself, and `launcher run`'s local tasks.
    Here,
    /// Inside the task (ECS): the launcher checks everything but the files.
    InTheTask,
}

/// librdkafka's properties whose value is a file that the client reads when it is created.
const FILE_PROPERTIES: [&str; 6] = [
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.keystore.location",
    "ssl.crl.location",
    "sasl.kerberos.keytab",
];

/// The properties given, by variable, secrets' values left out: what a refusal of the
/// configuration as a whole quotes.
fn shown_properties(properties: &BTreeMap<String, String>) -> String {
    properties
        .iter()
        .map(|(k, v)| {
            let name = variable_name(k);
            if is_secret_name(&name) {
                format!("{name}={REDACTED}")
            } else {
                format!("{name}={v}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// librdkafka's refusal with every quoted property name put back as the user typed it:
/// librdkafka names the canonical property (`queue.buffering.max.ms` for `linger.ms`,
/// `compression.codec` for `compression.type`). A quoted value is left as it is.
fn own_names(desc: &str, property: &str, value: &str) -> String {
    let mut out = String::new();
    let mut parts = desc.trim().split('"');
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    let mut quoted = true;
    for part in parts {
        if quoted {
            out.push('"');
            out.push_str(if part == value { part } else { property });
            out.push('"');
        } else {
            out.push_str(part);
        }
        quoted = !quoted;
    }
    out
}

/// What to say when librdkafka rejects the configuration of a `client` (`producer`,
/// `consumer`) at preflight (validation has already tried it, so this is for what only a real
/// client finds): property names only, and the values of secret properties removed from
/// librdkafka's own text, which echoes them.
pub(crate) fn config_error(
    e: &KafkaError,
    properties: &BTreeMap<String, String>,
    client: &str,
) -> String {
    let shown: Vec<String> = properties
        .keys()
        .map(|k| variable_name(k))
        .filter(|k| !is_secret_name(k))
        .collect();
    format!(
        "librdkafka rejected the {client} configuration: {} (properties given: {})",
        redact_values(&e.to_string(), &secret_values(properties)),
        shown.join(", ")
    )
}

/// The values of the secret properties among `properties`.
fn secret_values(properties: &BTreeMap<String, String>) -> Vec<String> {
    properties
        .iter()
        .filter(|(k, _)| is_secret_name(&variable_name(k)))
        .map(|(_, v)| v.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn refusal(pairs: &[(&str, &str)]) -> String {
        let p = props(pairs);
        let secrets = secret_values(&p);
        check_properties(&p, &secrets, Files::Here)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_ca_file_missing_here_is_refused_for_local_tasks_and_left_to_the_task_on_ecs() {
        let p = props(&[
            ("bootstrap.servers", "b-1.example:9094"),
            ("security.protocol", "ssl"),
            ("ssl.ca.location", "/nonexistent/fleetload/ca.pem"),
        ]);
        let here = check_properties(&p, &[], Files::Here)
            .unwrap_err()
            .to_string();
        assert!(here.contains("ssl.ca.location"), "{here}");
        check_properties(&p, &[], Files::InTheTask).unwrap();
    }

    #[test]
    fn good_properties_pass_without_a_broker() {
        let p = props(&[
            ("bootstrap.servers", "127.0.0.1:1"),
            ("linger.ms", "20"),
            ("acks", "all"),
            ("compression.type", "lz4"),
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "loader"),
            ("sasl.password", "hunter2"),
        ]);
        check_properties(&p, &[], Files::Here).unwrap();
        // MSK IAM without a protocol: SASL_SSL is chosen for it.
        check_properties(
            &props(&[("sasl.mechanism", "AWS_MSK_IAM")]),
            &[],
            Files::Here,
        )
        .unwrap();
    }

    #[test]
    fn sasl_settings_without_a_sasl_protocol_are_refused_naming_the_setting() {
        for (pairs, starts, protocol) in [
            (
                &[("sasl.mechanism", "BOGUS")][..],
                "FLEETLOAD_KAFKA_SASL_MECHANISM=\"BOGUS\"",
                "PLAINTEXT (the default)",
            ),
            (
                &[
                    ("security.protocol", "SSL"),
                    ("sasl.username", "loader"),
                    ("sasl.mechanism", "SCRAM-SHA-512"),
                ][..],
                "FLEETLOAD_KAFKA_SASL_MECHANISM=\"SCRAM-SHA-512\"",
                "security.protocol is SSL",
            ),
            (
                &[("sasl.password", "hunter2")][..],
                "FLEETLOAD_KAFKA_SASL_PASSWORD=",
                "PLAINTEXT",
            ),
        ] {
            let e = refusal(pairs);
            assert!(e.starts_with(starts), "{pairs:?}: {e}");
            assert!(e.contains(protocol) && e.contains("SASL_SSL"), "{e}");
            assert!(!e.contains("hunter2") && !e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn bad_properties_are_refused_by_the_name_typed() {
        for (pairs, name, says) in [
            (
                &[("linger.ms", "banana")][..],
                "FLEETLOAD_KAFKA_LINGER_MS=\"banana\"",
                "\"linger.ms\"",
            ),
            (
                &[("acks", "7")][..],
                "FLEETLOAD_KAFKA_ACKS=\"7\"",
                "all, -1, 0 or 1",
            ),
            (
                &[("compression.type", "lz5")][..],
                "FLEETLOAD_KAFKA_COMPRESSION_TYPE=\"lz5\"",
                "\"compression.type\"",
            ),
            (
                &[("no.such.thing", "1")][..],
                "FLEETLOAD_KAFKA_NO_SUCH_THING=\"1\"",
                "not a librdkafka property",
            ),
            (
                &[
                    ("security.protocol", "SASL_PLAINTEXT"),
                    ("sasl.mechanism", "BOGUS"),
                ][..],
                "FLEETLOAD_KAFKA_*=",
                "BOGUS",
            ),
        ] {
            let e = refusal(pairs);
            assert!(e.starts_with(name) && e.contains(says), "{pairs:?}: {e}");
            assert!(
                !e.contains("queue.buffering") && !e.contains("compression.codec"),
                "{e}"
            );
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn librdkafka_text_never_carries_a_secret() {
        let e = refusal(&[
            ("security.protocol", "SASL_SSL"),
            ("sasl.password.x", "hunter2"),
        ]);
        assert!(e.starts_with("FLEETLOAD_KAFKA_SASL_PASSWORD_X="), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let e = refusal(&[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "hunter2-mech"),
            ("sasl.password", "hunter2-mech"),
        ]);
        assert!(!e.contains("hunter2"), "{e}");
        let p = props(&[("sasl.password.x", "hunter2")]);
        let mut c = ClientConfig::new();
        c.set("sasl.password.x", "hunter2");
        let Err(err) = c.create::<BaseProducer>() else {
            panic!("an unknown property was accepted")
        };
        assert!(
            err.to_string().contains("hunter2"),
            "librdkafka no longer echoes: {err}"
        );
        assert!(!config_error(&err, &p, "producer").contains("hunter2"));
    }
}
