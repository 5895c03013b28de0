//! AWS shared config and credentials files (`~/.aws/credentials`, `~/.aws/config`, `AWS_PROFILE`),
//! which `object_store` 0.14 does not read: a user whose keys live in a profile, as the AWS CLI,
//! Spark's s3a and boto3 let them, would otherwise get "access denied" with no hint why.
//!
//! What is read, as the AWS CLI reads it: the profile `AWS_PROFILE` (or `AWS_DEFAULT_PROFILE`,
//! else `default`); `[name]` of the credentials file (`AWS_SHARED_CREDENTIALS_FILE`, else
//! `~/.aws/credentials`) and `[profile name]` (`[default]` for the default) of the config file
//! (`AWS_CONFIG_FILE`, else `~/.aws/config`), the credentials file winning where both set a key.
//! Keys: `aws_access_key_id`, `aws_secret_access_key`, `aws_session_token`, `region`,
//! `endpoint_url`. The environment wins over the profile, key by key, as in the AWS SDKs.
//!
//! Not supported (a profile that relies on them is refused with a message): assumed roles
//! (`role_arn`), SSO (`sso_*`) and `credential_process`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What a profile sets. `Debug` never shows the secret or the token.
#[derive(Default, Clone, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profile")
            .field("name", &self.name)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key.as_ref().map(|_| "***"))
            .field("session_token", &self.session_token.as_ref().map(|_| "***"))
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .finish()
    }
}

/// A profile that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error(
        "AWS_PROFILE={name}: no [{name}] in {credentials} and no [profile {name}] in {config}; name a profile that \
         exists, or unset AWS_PROFILE and give AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    )]
    Missing { name: String, credentials: String, config: String },
    #[error(
        "AWS profile `{name}` uses {feature}, which streamlake cannot use; give the keys in the profile \
         (aws_access_key_id, aws_secret_access_key) or in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    )]
    Unsupported { name: String, feature: String },
    #[error("AWS profile `{name}` sets aws_access_key_id or aws_secret_access_key but not both")]
    HalfKey { name: String },
}

/// The profile in force for this process's environment (`None` when no file names it and none
/// was asked for).
pub fn from_env() -> Result<Option<Profile>, ProfileError> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let home = var("HOME").map(PathBuf::from);
    let file = |var_name: &str, default: &str| -> Option<PathBuf> {
        var(var_name).map(PathBuf::from).or_else(|| home.as_ref().map(|h| h.join(".aws").join(default)))
    };
    let credentials = file("AWS_SHARED_CREDENTIALS_FILE", "credentials");
    let config = file("AWS_CONFIG_FILE", "config");
    let read =
        |p: &Option<PathBuf>| p.as_deref().and_then(|p| std::fs::read_to_string(p).ok()).unwrap_or_default();
    let asked = var("AWS_PROFILE").or_else(|| var("AWS_DEFAULT_PROFILE"));
    resolve(asked.as_deref(), &read(&credentials), &read(&config), &shown(&credentials), &shown(&config))
}

fn shown(path: &Option<PathBuf>) -> String {
    path.as_deref().map_or_else(|| "~/.aws/…".to_string(), |p: &Path| p.display().to_string())
}

/// The profile `asked` (or `default`) from the two files' texts; a profile asked for by name
/// must exist.
pub fn resolve(
    asked: Option<&str>,
    credentials: &str,
    config: &str,
    credentials_path: &str,
    config_path: &str,
) -> Result<Option<Profile>, ProfileError> {
    let name = asked.unwrap_or("default");
    let creds = sections(credentials);
    let conf = sections(config);
    let config_section = if name == "default" { "default".to_string() } else { format!("profile {name}") };
    let (from_creds, from_config) = (creds.get(name), conf.get(&config_section));
    if from_creds.is_none() && from_config.is_none() {
        return match asked {
            Some(_) => Err(ProfileError::Missing {
                name: name.to_string(),
                credentials: credentials_path.to_string(),
                config: config_path.to_string(),
            }),
            None => Ok(None),
        };
    }
    let get = |key: &str| {
        from_creds.and_then(|s| s.get(key)).or_else(|| from_config.and_then(|s| s.get(key))).cloned()
    };
    let profile = Profile {
        name: name.to_string(),
        access_key_id: get("aws_access_key_id"),
        secret_access_key: get("aws_secret_access_key"),
        session_token: get("aws_session_token"),
        region: get("region"),
        endpoint_url: get("endpoint_url"),
    };
    if profile.access_key_id.is_some() != profile.secret_access_key.is_some() {
        return Err(ProfileError::HalfKey { name: name.to_string() });
    }
    if profile.access_key_id.is_none() {
        let all = from_creds.into_iter().chain(from_config).flat_map(|s| s.keys());
        if let Some(feature) =
            all.filter(|k| *k == "role_arn" || *k == "credential_process" || k.starts_with("sso_")).min()
        {
            return Err(ProfileError::Unsupported { name: name.to_string(), feature: feature.clone() });
        }
    }
    Ok(Some(profile))
}

/// `[section]` → key → value of an INI text as the AWS files write it (`#` and `;` comments,
/// `key = value`, keys case-insensitive).
fn sections(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
            out.entry(name.clone()).or_default();
            current = Some(name);
            continue;
        }
        let (Some(section), Some((key, value))) = (&current, line.split_once('=')) else { continue };
        let value = value.trim();
        if value.is_empty() {
            continue; // a nested block (`s3 =` followed by indented lines): not used here
        }
        out.entry(section.clone()).or_default().insert(key.trim().to_ascii_lowercase(), value.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREDENTIALS: &str = "
# comment
[default]
aws_access_key_id = AKIADEFAULT
aws_secret_access_key = defaultsecret

[lake]
aws_access_key_id=AKIALAKE
aws_secret_access_key=lakesecret
aws_session_token = token
";
    const CONFIG: &str = "
[default]
region = eu-west-1

[profile lake]
region = us-east-2
endpoint_url = http://127.0.0.1:8333
s3 =
  addressing_style = path

[profile sso]
sso_start_url = https://example.invalid/start
";

    fn resolve_(asked: Option<&str>) -> Result<Option<Profile>, ProfileError> {
        resolve(asked, CREDENTIALS, CONFIG, "creds", "conf")
    }

    #[test]
    fn a_named_profile_takes_keys_from_credentials_and_settings_from_config() {
        let p = resolve_(Some("lake")).unwrap().unwrap();
        assert_eq!(p.access_key_id.as_deref(), Some("AKIALAKE"));
        assert_eq!(p.secret_access_key.as_deref(), Some("lakesecret"));
        assert_eq!(p.session_token.as_deref(), Some("token"));
        assert_eq!(p.region.as_deref(), Some("us-east-2"));
        assert_eq!(p.endpoint_url.as_deref(), Some("http://127.0.0.1:8333"));
        let shown = format!("{p:?}");
        assert!(!shown.contains("lakesecret") && !shown.contains("token\""), "{shown}");
    }

    #[test]
    fn the_default_profile_is_used_when_none_is_named_and_may_be_absent() {
        let p = resolve_(None).unwrap().unwrap();
        assert_eq!(
            (p.access_key_id.as_deref(), p.region.as_deref()),
            (Some("AKIADEFAULT"), Some("eu-west-1"))
        );
        assert_eq!(resolve(None, "", "", "c", "f").unwrap(), None);
    }

    #[test]
    fn a_missing_or_unusable_profile_is_an_error_naming_it() {
        let err = resolve_(Some("nope")).unwrap_err().to_string();
        assert!(err.contains("AWS_PROFILE=nope") && err.contains("creds") && err.contains("conf"), "{err}");
        let err = resolve_(Some("sso")).unwrap_err().to_string();
        assert!(err.contains("sso_start_url"), "{err}");
        let half = resolve(Some("h"), "[h]\naws_access_key_id = A\n", "", "c", "f").unwrap_err();
        assert_eq!(half, ProfileError::HalfKey { name: "h".into() });
    }
}
