//! OpenStack Keystone v3 password auth: settings from `clouds.yaml` (`--cloud`/`OS_CLOUD`)
//! or the standard `OS_*` variables, a scoped token from `POST /v3/auth/tokens`, and service
//! endpoints from the token's catalog.

use crate::error::{Error, Result};
use crate::ops::upload::http::{classify, env_var, retry, Secret};
use serde_json::{json, Value};
use std::path::PathBuf;

/// How to reach and authenticate to a cloud. The password is never printed.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// Identity endpoint (with or without `/v3`); `None` = no authentication (a Glance
    /// running without Keystone, reached through the endpoint override).
    pub auth_url: Option<String>,
    /// User name (with a user domain) or...
    pub username: Option<String>,
    /// ... user id.
    pub user_id: Option<String>,
    /// Password.
    pub password: Secret,
    /// Application credential id (`auth_type: v3applicationcredential`), or...
    pub app_cred_id: Option<String>,
    /// ... its name (with the user).
    pub app_cred_name: Option<String>,
    /// Application credential secret; when set, used instead of the password.
    pub app_cred_secret: Secret,
    /// Domain of the user, by name.
    pub user_domain_name: Option<String>,
    /// Domain of the user, by id.
    pub user_domain_id: Option<String>,
    /// Project scope, by name (with a project domain) or...
    pub project_name: Option<String>,
    /// ... by id.
    pub project_id: Option<String>,
    /// Domain of the project, by name.
    pub project_domain_name: Option<String>,
    /// Domain of the project, by id.
    pub project_domain_id: Option<String>,
    /// Region of the catalog endpoint.
    pub region_name: Option<String>,
    /// Catalog interface: public (default), internal or admin.
    pub interface: String,
    /// Image endpoint override (`--endpoint`, `OS_IMAGE_URL`, clouds.yaml `image_endpoint_override`).
    pub image_url: Option<String>,
    /// Where the settings came from, for messages.
    pub source: String,
}

/// The clouds.yaml files, in the order openstacksdk searches them.
fn search_paths(file: &str) -> Vec<PathBuf> {
    let mut v = vec![PathBuf::from(file)];
    let home = std::env::var_os("HOME").map(PathBuf::from);
    match std::env::var_os("XDG_CONFIG_HOME") {
        Some(x) => v.push(PathBuf::from(x).join("openstack").join(file)),
        None => {
            if let Some(h) = &home {
                v.push(h.join(".config/openstack").join(file));
            }
        }
    }
    v.push(PathBuf::from("/etc/openstack").join(file));
    v
}

fn read_yaml(path: &std::path::Path) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::config(format!("{}: {e}", path.display())))?;
    serde_yaml_ng::from_str(&text)
        .map_err(|e| Error::config(format!("{}: not valid YAML: {e}", path.display())))
}

/// Merge `b` into `a` (tables merge, everything else replaces).
fn merge(a: &mut Value, b: Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

impl AuthConfig {
    /// Load from clouds.yaml when a cloud is named (argument or `OS_CLOUD`), else from the
    /// `OS_*` variables. `endpoint` overrides the image endpoint of the catalog.
    pub fn load(cloud: Option<&str>, endpoint: Option<&str>) -> Result<AuthConfig> {
        let cloud = cloud.map(str::to_string).or_else(|| env_var("OS_CLOUD"));
        let mut c = match cloud {
            Some(name) => Self::from_clouds_yaml(&name)?,
            None => Self::from_env(),
        };
        if let Some(e) = endpoint
            .map(str::to_string)
            .or_else(|| env_var("OS_IMAGE_URL"))
        {
            c.image_url = Some(e);
        }
        c.check()?;
        Ok(c)
    }

    fn from_env() -> AuthConfig {
        AuthConfig {
            auth_url: env_var("OS_AUTH_URL"),
            username: env_var("OS_USERNAME"),
            user_id: env_var("OS_USER_ID"),
            password: Secret(env_var("OS_PASSWORD").unwrap_or_default()),
            app_cred_id: env_var("OS_APPLICATION_CREDENTIAL_ID"),
            app_cred_name: env_var("OS_APPLICATION_CREDENTIAL_NAME"),
            app_cred_secret: Secret(
                env_var("OS_APPLICATION_CREDENTIAL_SECRET").unwrap_or_default(),
            ),
            user_domain_name: env_var("OS_USER_DOMAIN_NAME").or_else(|| env_var("OS_DOMAIN_NAME")),
            user_domain_id: env_var("OS_USER_DOMAIN_ID").or_else(|| env_var("OS_DOMAIN_ID")),
            project_name: env_var("OS_PROJECT_NAME").or_else(|| env_var("OS_TENANT_NAME")),
            project_id: env_var("OS_PROJECT_ID").or_else(|| env_var("OS_TENANT_ID")),
            project_domain_name: env_var("OS_PROJECT_DOMAIN_NAME")
                .or_else(|| env_var("OS_DOMAIN_NAME")),
            project_domain_id: env_var("OS_PROJECT_DOMAIN_ID").or_else(|| env_var("OS_DOMAIN_ID")),
            region_name: env_var("OS_REGION_NAME"),
            interface: env_var("OS_INTERFACE").unwrap_or_else(|| "public".into()),
            image_url: None,
            source: "OS_* environment variables".into(),
        }
    }

    /// Read cloud `name` from clouds.yaml, merged with secure.yaml (for the password).
    pub fn from_clouds_yaml(name: &str) -> Result<AuthConfig> {
        let file = match env_var("OS_CLIENT_CONFIG_FILE") {
            Some(f) => PathBuf::from(f),
            None => search_paths("clouds.yaml")
                .into_iter()
                .find(|p| p.is_file())
                .ok_or_else(|| {
                    Error::config(format!(
                        "cloud {name}: no clouds.yaml found (looked in {})",
                        search_paths("clouds.yaml")
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?,
        };
        let mut doc = read_yaml(&file)?;
        let secure = match env_var("OS_CLIENT_SECURE_FILE") {
            Some(f) => Some(PathBuf::from(f)),
            None => search_paths("secure.yaml")
                .into_iter()
                .find(|p| p.is_file()),
        };
        if let Some(s) = secure {
            merge(&mut doc, read_yaml(&s)?);
        }
        let c = &doc["clouds"][name];
        if !c.is_object() {
            return Err(Error::config(format!(
                "{}: clouds.{name}: no such cloud",
                file.display()
            )));
        }
        let s = |v: &Value| v.as_str().map(str::to_string);
        let a = &c["auth"];
        let domain = s(&a["domain_name"]).or_else(|| s(&a["default_domain"]));
        Ok(AuthConfig {
            auth_url: s(&a["auth_url"]),
            username: s(&a["username"]),
            user_id: s(&a["user_id"]),
            password: Secret(s(&a["password"]).unwrap_or_default()),
            app_cred_id: s(&a["application_credential_id"]),
            app_cred_name: s(&a["application_credential_name"]),
            app_cred_secret: Secret(s(&a["application_credential_secret"]).unwrap_or_default()),
            user_domain_name: s(&a["user_domain_name"]).or_else(|| domain.clone()),
            user_domain_id: s(&a["user_domain_id"]),
            project_name: s(&a["project_name"]).or_else(|| s(&a["tenant_name"])),
            project_id: s(&a["project_id"]).or_else(|| s(&a["tenant_id"])),
            project_domain_name: s(&a["project_domain_name"]).or(domain),
            project_domain_id: s(&a["project_domain_id"]),
            region_name: s(&c["region_name"]),
            interface: s(&c["interface"]).unwrap_or_else(|| "public".into()),
            image_url: s(&c["image_endpoint_override"]),
            source: format!("{}: clouds.{name}", file.display()),
        })
    }

    fn check(&self) -> Result<()> {
        let Some(url) = &self.auth_url else {
            if self.image_url.is_none() {
                return Err(Error::config(format!(
                    "{}: no auth_url (set OS_AUTH_URL or OS_CLOUD, or --endpoint for a Glance without Keystone)",
                    self.source
                )));
            }
            return Ok(());
        };
        let missing =
            |what: &str| Error::config(format!("{}: {what} missing for {url}", self.source));
        if !self.app_cred_secret.0.is_empty() {
            if self.app_cred_id.is_none()
                && (self.app_cred_name.is_none()
                    || (self.username.is_none() && self.user_id.is_none()))
            {
                return Err(missing(
                    "application credential id (OS_APPLICATION_CREDENTIAL_ID), or its name and the user",
                ));
            }
            return Ok(());
        }
        if self.username.is_none() && self.user_id.is_none() {
            return Err(missing("username (OS_USERNAME) or user_id"));
        }
        if self.password.0.is_empty() {
            return Err(missing("password (OS_PASSWORD)"));
        }
        if self.user_id.is_none()
            && self.user_domain_name.is_none()
            && self.user_domain_id.is_none()
        {
            return Err(missing("user domain (OS_USER_DOMAIN_NAME)"));
        }
        Ok(())
    }

    /// The `POST /v3/auth/tokens` body: the application credential when one is set (it
    /// carries its own project), else the password method with the project scope.
    pub fn token_request(&self) -> Value {
        let domain = |name: &Option<String>, id: &Option<String>| match (id, name) {
            (Some(id), _) => json!({ "id": id }),
            (None, Some(n)) => json!({ "name": n }),
            (None, None) => json!({ "name": "Default" }),
        };
        let user = match &self.user_id {
            Some(id) => json!({ "id": id, "password": self.password.0 }),
            None => json!({
                "name": self.username,
                "domain": domain(&self.user_domain_name, &self.user_domain_id),
                "password": self.password.0,
            }),
        };
        if !self.app_cred_secret.0.is_empty() {
            let mut ac = json!({ "secret": self.app_cred_secret.0 });
            match (&self.app_cred_id, &self.user_id) {
                (Some(id), _) => ac["id"] = json!(id),
                (None, Some(uid)) => {
                    ac["name"] = json!(self.app_cred_name);
                    ac["user"] = json!({ "id": uid });
                }
                (None, None) => {
                    ac["name"] = json!(self.app_cred_name);
                    ac["user"] = json!({
                        "name": self.username,
                        "domain": domain(&self.user_domain_name, &self.user_domain_id),
                    });
                }
            }
            return json!({ "auth": { "identity": {
                "methods": ["application_credential"],
                "application_credential": ac,
            }}});
        }
        let mut auth = json!({
            "identity": { "methods": ["password"], "password": { "user": user } }
        });
        let project = match (&self.project_id, &self.project_name) {
            (Some(id), _) => Some(json!({ "id": id })),
            (None, Some(n)) => Some(json!({
                "name": n,
                "domain": domain(&self.project_domain_name, &self.project_domain_id),
            })),
            (None, None) => None,
        };
        if let Some(p) = project {
            auth["scope"] = json!({ "project": p });
        }
        json!({ "auth": auth })
    }
}

/// An authenticated session: the token (none without Keystone) and the catalog.
#[derive(Debug, Clone)]
pub struct Session {
    /// `X-Auth-Token` value.
    pub token: Option<Secret>,
    /// The token's service catalog.
    pub catalog: Value,
}

/// The identity URL of the tokens resource, whether or not `auth_url` names the version.
pub fn tokens_url(auth_url: &str) -> String {
    let base = auth_url.trim_end_matches('/');
    if base.ends_with("/v3") {
        format!("{base}/auth/tokens")
    } else {
        format!("{base}/v3/auth/tokens")
    }
}

/// Get a token (or none when there is no `auth_url`).
pub fn authenticate(agent: &ureq::Agent, cfg: &AuthConfig) -> Result<Session> {
    let Some(auth_url) = &cfg.auth_url else {
        return Ok(Session {
            token: None,
            catalog: Value::Null,
        });
    };
    let url = tokens_url(auth_url);
    let body = cfg.token_request();
    let who = cfg
        .username
        .clone()
        .or_else(|| cfg.user_id.clone())
        .or_else(|| cfg.app_cred_id.clone())
        .or_else(|| cfg.app_cred_name.clone())
        .unwrap_or_default();
    let resp = retry("keystone token", || {
        agent
            .post(&url)
            .set("Content-Type", "application/json")
            .send_string(&body.to_string())
            .map_err(|e| match e {
                ureq::Error::Status(401, _) => {
                    crate::ops::upload::http::Attempt::Fatal(Error::failed(format!(
                        "{url}: Keystone refused the credentials of {who} (HTTP 401; from {})",
                        cfg.source
                    )))
                }
                e => classify(e, &format!("POST {url}")),
            })
    })?;
    let token = resp
        .header("X-Subject-Token")
        .map(|t| Secret(t.to_string()))
        .ok_or_else(|| Error::failed(format!("{url}: no X-Subject-Token in the answer")))?;
    let text = resp
        .into_string()
        .map_err(|e| Error::failed(format!("{url}: {e}")))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| Error::failed(format!("{url}: bad token JSON: {e}")))?;
    Ok(Session {
        token: Some(token),
        catalog: v["token"]["catalog"].clone(),
    })
}

impl Session {
    /// The URL of service `kind` (e.g. `image`) for the interface and region.
    pub fn endpoint(&self, kind: &str, interface: &str, region: Option<&str>) -> Result<String> {
        let services = self.catalog.as_array().cloned().unwrap_or_default();
        let svc = services
            .iter()
            .find(|s| s["type"] == kind)
            .ok_or_else(|| Error::failed(format!("the service catalog has no {kind} service")))?;
        svc["endpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| {
                e["interface"] == interface
                    && region.is_none_or(|r| e["region"] == r || e["region_id"] == r)
            })
            .and_then(|e| e["url"].as_str())
            .map(str::to_string)
            .ok_or_else(|| {
                Error::failed(format!(
                    "the {kind} service has no {interface} endpoint{}",
                    region
                        .map(|r| format!(" in region {r}"))
                        .unwrap_or_default()
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_body_scopes_the_project() {
        let c = AuthConfig {
            auth_url: Some("http://127.0.0.1:5000".into()),
            username: Some("u".into()),
            password: Secret("p".into()),
            user_domain_name: Some("Default".into()),
            project_name: Some("proj".into()),
            project_domain_id: Some("default".into()),
            ..Default::default()
        };
        let b = c.token_request();
        assert_eq!(
            b["auth"]["identity"]["password"]["user"]["domain"]["name"],
            "Default"
        );
        assert_eq!(b["auth"]["scope"]["project"]["name"], "proj");
        assert_eq!(b["auth"]["scope"]["project"]["domain"]["id"], "default");
        let ac = AuthConfig {
            app_cred_id: Some("abc".into()),
            app_cred_secret: Secret("s".into()),
            ..c.clone()
        };
        let b = ac.token_request();
        assert_eq!(
            b["auth"]["identity"]["methods"][0],
            "application_credential"
        );
        assert_eq!(b["auth"]["identity"]["application_credential"]["id"], "abc");
        assert!(b["auth"].get("scope").is_none());
        assert_eq!(
            tokens_url("http://k:5000/v3/"),
            "http://k:5000/v3/auth/tokens"
        );
        assert_eq!(tokens_url("http://k:5000"), "http://k:5000/v3/auth/tokens");
    }

    #[test]
    fn catalog_lookup() {
        let s = Session {
            token: None,
            catalog: json!([{ "type": "image", "endpoints": [
                { "interface": "internal", "region": "GRA", "url": "http://i" },
                { "interface": "public", "region": "SBG", "url": "http://s" },
                { "interface": "public", "region": "GRA", "url": "http://g" }]}]),
        };
        assert_eq!(
            s.endpoint("image", "public", Some("GRA")).unwrap(),
            "http://g"
        );
        assert_eq!(s.endpoint("image", "public", None).unwrap(), "http://s");
        assert!(s.endpoint("image", "admin", None).is_err());
        assert!(s.endpoint("object-store", "public", None).is_err());
    }

    #[test]
    fn clouds_yaml_with_secure_yaml() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("clouds.yaml");
        std::fs::write(
            &f,
            "clouds:\n  ovh:\n    region_name: GRA11\n    auth:\n      auth_url: https://auth.example/v3\n      username: u\n      project_name: p\n      user_domain_name: Default\n      project_domain_name: Default\n",
        )
        .unwrap();
        let s = d.path().join("secure.yaml");
        std::fs::write(&s, "clouds:\n  ovh:\n    auth:\n      password: pw\n").unwrap();
        let mut doc = read_yaml(&f).unwrap();
        merge(&mut doc, read_yaml(&s).unwrap());
        assert_eq!(doc["clouds"]["ovh"]["auth"]["password"], "pw");
        assert_eq!(doc["clouds"]["ovh"]["region_name"], "GRA11");
    }
}
