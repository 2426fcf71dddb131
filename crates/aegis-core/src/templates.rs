//! Session templates (cli-mcp-config §4.3): tenant-scoped presets of the create body whose
//! prompt may hold `{{variables}}`, plus the built-in starter templates the CLI scaffolds
//! (`ag init --list-templates`, `ag init --from-template NAME`).
//!
//! Stored in the `templates` collection (scope `""`, key = template id).

use std::collections::BTreeMap;

use aegis_api_types::orchestration::{
    CreateTemplateRequest, SessionTemplate, StarterTemplate, TemplateSessionRequest,
    UpdateTemplateRequest,
};
use aegis_api_types::{CreateSessionRequest, PermissionProfile, SessionInfo};
use aegis_runtime::registry::ResolveError;
use aegis_store::collections;
use serde_json::json;

use crate::bus::now_ms;
use crate::{CoreError, CoreResult, ErrorKind, Principal, Role, SessionService, policy, workdir};

// ---------------------------------------------------------------------------------------------
// Placeholders
// ---------------------------------------------------------------------------------------------

/// A `{{ … }}` placeholder: its byte range in the text and its trimmed content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    pub start: usize,
    pub end: usize,
    pub inner: String,
}

/// Every `{{ … }}` of `text` (whitespace inside the braces allowed), in order.
pub fn placeholders(text: &str) -> Vec<Placeholder> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(open) = text[from..].find("{{").map(|i| i + from) {
        let Some(close) = text[open + 2..].find("}}").map(|i| i + open + 2) else {
            break;
        };
        let inner = text[open + 2..close].trim();
        // `{{{x}}}` and similar: start again inside when the content has another opener.
        if let Some(again) = inner.rfind("{{") {
            from = open + 2 + again;
            continue;
        }
        out.push(Placeholder {
            start: open,
            end: close + 2,
            inner: inner.to_owned(),
        });
        from = close + 2;
    }
    out
}

fn is_variable_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && s.len() <= 64
}

/// The `{{variables}}` of a text, without duplicates, in order of appearance.
pub fn template_variables(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in placeholders(text) {
        if is_variable_name(&p.inner) && !out.contains(&p.inner) {
            out.push(p.inner);
        }
    }
    out
}

/// Replace `{{name}}` by `vars[name]`. Placeholders that are not variable names are kept.
/// Errors with the first variable without a value.
pub fn render_template(text: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for p in placeholders(text) {
        if !is_variable_name(&p.inner) {
            continue;
        }
        let Some(v) = vars.get(&p.inner) else {
            return Err(p.inner);
        };
        out.push_str(&text[last..p.start]);
        out.push_str(v);
        last = p.end;
    }
    out.push_str(&text[last..]);
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Starter templates
// ---------------------------------------------------------------------------------------------

const STARTERS: [(&str, &str, &str, &str); 4] = [
    (
        "code-reviewer",
        "Review the working tree's changes for bugs, security issues and style",
        "default",
        "Review the uncommitted changes in this repository. Look for bugs, security \
         problems, missing tests and unclear code. Report each finding with the file, the line \
         and a suggested fix, most severe first. Do not modify any file.",
    ),
    (
        "ci-runner",
        "Run the project's build and tests, then fix what fails",
        "acceptEdits",
        "Run the build and the test suite of this project (`{{test_command}}`). If anything \
         fails, find the cause, fix it with the smallest change, and run the command again \
         until it passes. Finish with a short summary of what failed and what you changed.",
    ),
    (
        "pr-reviewer",
        "Review a pull request branch against its base",
        "default",
        "Review the pull request on branch `{{branch}}` against `{{base}}` (use `git diff \
         {{base}}...{{branch}}`). Summarise what it changes, then list blocking issues, \
         suggestions and questions for the author. Do not push or modify anything.",
    ),
    (
        "docs-writer",
        "Write or update documentation for a part of the code",
        "acceptEdits",
        "Write clear documentation for {{topic}}: what it is for, how to use it with a short \
         example, and its limits. Update the existing docs in place when they exist, keep the \
         project's style, and do not change any code.",
    ),
];

/// The built-in starter templates (`ag init --list-templates`).
pub fn starter_templates() -> Vec<StarterTemplate> {
    STARTERS
        .iter()
        .map(|(name, description, mode, prompt)| StarterTemplate {
            name: (*name).to_owned(),
            description: (*description).to_owned(),
            prompt: (*prompt).to_owned(),
            permission_mode: (*mode).to_owned(),
            variables: template_variables(prompt),
        })
        .collect()
}

/// One starter template by name (`ag init --from-template NAME`).
pub fn starter_template(name: &str) -> Option<StarterTemplate> {
    starter_templates().into_iter().find(|t| t.name == name)
}

/// A starter template as the body of `POST /v1/templates` for a work dir.
pub fn starter_template_request(name: &str, work_dir: &str) -> Option<CreateTemplateRequest> {
    starter_template(name).map(|t| CreateTemplateRequest {
        name: t.name,
        description: Some(t.description),
        work_dir: Some(work_dir.to_owned()),
        prompt: Some(t.prompt),
        permission_mode: Some(t.permission_mode),
        ..Default::default()
    })
}

// ---------------------------------------------------------------------------------------------
// Service
// ---------------------------------------------------------------------------------------------

fn not_found() -> CoreError {
    CoreError::not_found("template")
}

fn mode_of(mode: Option<String>, auto_approve: Option<bool>) -> Option<String> {
    mode.or(match auto_approve {
        Some(true) => Some("bypassPermissions".into()),
        Some(false) => Some("default".into()),
        None => None,
    })
}

impl SessionService {
    fn check_template_fields(&self, t: &SessionTemplate) -> CoreResult<()> {
        let n = t.name.chars().count();
        if n == 0 || n > 100 {
            return Err(CoreError::validation("name", "1 to 100 characters"));
        }
        if t.description
            .as_ref()
            .is_some_and(|d| d.chars().count() > 500)
        {
            return Err(CoreError::validation(
                "description",
                "at most 500 characters",
            ));
        }
        if let Some(pr) = &t.prompt {
            if pr.chars().count() > 100_000 {
                return Err(CoreError::new(
                    ErrorKind::PayloadTooLarge,
                    "prompt: at most 100000 characters",
                )
                .with_details(
                    json!([{"path": "prompt", "message": "at most 100000 characters"}]),
                ));
            }
        }
        if let Some(m) = &t.permission_mode {
            if !policy::MODES.contains(&m.as_str()) {
                return Err(CoreError::validation(
                    "permissionMode",
                    format!("must be one of {}", policy::MODES.join(", ")),
                ));
            }
        }
        if let Some(m) = &t.model {
            if m.trim().is_empty() || m.chars().count() > 200 {
                return Err(CoreError::validation("model", "1 to 200 characters"));
            }
        }
        if let Some(s) = t.stall_threshold_ms {
            if !(1000..=86_400_000).contains(&s) {
                return Err(CoreError::validation(
                    "stallThresholdMs",
                    "must be 1000-86400000",
                ));
            }
        }
        if t.memory_keys.as_ref().is_some_and(|k| k.len() > 50) {
            return Err(CoreError::validation("memoryKeys", "at most 50 keys"));
        }
        if let Some(env) = &t.env {
            for (k, v) in env {
                crate::service::check_env_var(k, v)?;
            }
        }
        let cfg = self.config();
        if let Some(a) = &t.agent {
            if let Err(ResolveError::Unknown { .. }) = cfg.agents.resolve(a) {
                return Err(CoreError::new(
                    ErrorKind::UnknownAgent,
                    format!(
                        "unknown agent `{a}`; configured agents: {}",
                        cfg.agents.names().join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    fn canonical_work_dir(&self, raw: &str) -> CoreResult<String> {
        let cfg = self.config();
        Ok(workdir::validate(raw, &self.shared().roots(), &cfg.home)?
            .display()
            .to_string())
    }

    async fn load_template(&self, p: &Principal, id: &str) -> CoreResult<(SessionTemplate, u64)> {
        let id = id.to_ascii_lowercase();
        let Some(v) = self
            .shared()
            .store
            .get_doc(collections::TEMPLATES, "", &id)
            .await?
        else {
            return Err(not_found());
        };
        let t: SessionTemplate =
            serde_json::from_value(v.doc).map_err(|e| CoreError::internal(e.to_string()))?;
        if !p.sees_tenant(&t.tenant_id) {
            return Err(not_found());
        }
        Ok((t, v.version))
    }

    fn check_template_owner(p: &Principal, t: &SessionTemplate) -> CoreResult<()> {
        if p.role == Role::Admin || p.id == t.owner_key_id {
            Ok(())
        } else {
            Err(CoreError::new(
                ErrorKind::Forbidden,
                "only the template's owner or an admin may change it",
            )
            .with_details(json!({"required": "owner"})))
        }
    }

    async fn save_template(
        &self,
        t: &mut SessionTemplate,
        expected: Option<u64>,
    ) -> CoreResult<()> {
        let mut texts = t.prompt.clone().unwrap_or_default();
        texts.push('\n');
        t.variables = template_variables(&texts);
        let doc = serde_json::to_value(&*t).map_err(|e| CoreError::internal(e.to_string()))?;
        self.shared()
            .store
            .put_doc(collections::TEMPLATES, "", &t.id, &doc, expected)
            .await
            .map_err(|e| match e {
                aegis_store::StoreError::Conflict { .. } => CoreError::new(
                    ErrorKind::SessionBusy,
                    "the template was changed concurrently; retry",
                ),
                other => other.into(),
            })?;
        Ok(())
    }

    /// `GET /v1/templates`: visible templates, newest `updatedAt` first.
    pub async fn list_templates(&self, p: &Principal) -> CoreResult<Vec<SessionTemplate>> {
        let page = self
            .shared()
            .store
            .list_docs(collections::TEMPLATES, "", None, usize::MAX)
            .await?;
        let mut out: Vec<SessionTemplate> = page
            .items
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_value::<SessionTemplate>(v.doc).ok())
            .filter(|t| p.sees_tenant(&t.tenant_id))
            .collect();
        out.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(b.id.cmp(&a.id)));
        Ok(out)
    }

    /// `GET /v1/templates/:id`.
    pub async fn get_template(&self, p: &Principal, id: &str) -> CoreResult<SessionTemplate> {
        Ok(self.load_template(p, id).await?.0)
    }

    /// `POST /v1/templates`.
    pub async fn create_template(
        &self,
        p: &Principal,
        req: CreateTemplateRequest,
    ) -> CoreResult<SessionTemplate> {
        let mut work_dir = req.work_dir.clone();
        let mut agent = req.agent.clone();
        let mut model = req.model.clone();
        let mut mode = mode_of(req.permission_mode.clone(), req.auto_approve);
        let mut profile = req.permission_profile.clone();
        let mut stall = req.stall_threshold_ms;
        if let Some(sid) = &req.session_id {
            let info = self.get(p, sid).map_err(|e| match e.kind {
                ErrorKind::InvalidSessionId => {
                    CoreError::new(ErrorKind::NotFound, format!("session `{sid}` not found"))
                }
                _ => e,
            })?;
            work_dir = work_dir.or(Some(info.work_dir.clone()));
            agent = agent.or(Some(info.agent.clone()));
            model = model.or(info.model.clone());
            mode = mode.or(Some(info.permission_mode.clone()));
            stall = stall.or(Some(info.stall_threshold_ms));
            if profile.is_none() {
                profile = self
                    .permission_profile(p, sid)?
                    .get("permissionProfile")
                    .cloned()
                    .and_then(|v| serde_json::from_value::<PermissionProfile>(v).ok());
            }
        }
        let Some(work_dir) = work_dir else {
            return Err(CoreError::validation(
                "workDir",
                "is required (or give sessionId to copy it from a session)",
            ));
        };
        let now = now_ms();
        let mut t = SessionTemplate {
            id: uuid::Uuid::new_v4().to_string(),
            name: req.name,
            description: req.description,
            work_dir: self.canonical_work_dir(&work_dir)?,
            prompt: req.prompt,
            agent,
            model,
            permission_mode: mode,
            permission_profile: profile,
            env: req.env,
            stall_threshold_ms: stall,
            memory_keys: req.memory_keys,
            variables: vec![],
            owner_key_id: p.id.clone(),
            tenant_id: p.tenant_id.clone(),
            created_at: now,
            updated_at: now,
        };
        self.check_template_fields(&t)?;
        self.save_template(&mut t, Some(0)).await?;
        Ok(t)
    }

    /// `PUT /v1/templates/:id`: the given fields replace the stored ones.
    pub async fn update_template(
        &self,
        p: &Principal,
        id: &str,
        req: UpdateTemplateRequest,
    ) -> CoreResult<SessionTemplate> {
        let (mut t, version) = self.load_template(p, id).await?;
        Self::check_template_owner(p, &t)?;
        if let Some(v) = req.name {
            t.name = v;
        }
        if let Some(v) = req.description {
            t.description = Some(v);
        }
        if let Some(v) = req.work_dir {
            t.work_dir = self.canonical_work_dir(&v)?;
        } else {
            // Re-validated on every update (the roots may have changed).
            t.work_dir = self.canonical_work_dir(&t.work_dir)?;
        }
        if let Some(v) = req.prompt {
            t.prompt = Some(v);
        }
        if let Some(v) = req.agent {
            t.agent = Some(v);
        }
        if let Some(v) = req.model {
            t.model = Some(v);
        }
        if let Some(v) = mode_of(req.permission_mode, req.auto_approve) {
            t.permission_mode = Some(v);
        }
        if let Some(v) = req.permission_profile {
            t.permission_profile = Some(v);
        }
        if let Some(v) = req.env {
            t.env = Some(v);
        }
        if let Some(v) = req.stall_threshold_ms {
            t.stall_threshold_ms = Some(v);
        }
        if let Some(v) = req.memory_keys {
            t.memory_keys = Some(v);
        }
        t.updated_at = now_ms().max(t.updated_at + 1);
        self.check_template_fields(&t)?;
        self.save_template(&mut t, Some(version)).await?;
        Ok(t)
    }

    /// `DELETE /v1/templates/:id`.
    pub async fn delete_template(&self, p: &Principal, id: &str) -> CoreResult<()> {
        let (t, _) = self.load_template(p, id).await?;
        Self::check_template_owner(p, &t)?;
        self.shared()
            .store
            .delete_doc(collections::TEMPLATES, "", &t.id)
            .await?;
        Ok(())
    }

    /// The create body of `POST /v1/templates/:id/sessions`: override > template > defaults,
    /// `{{variables}}` substituted (a variable without a value → 400 naming it).
    pub fn template_create_request(
        t: &SessionTemplate,
        o: TemplateSessionRequest,
    ) -> CoreResult<CreateSessionRequest> {
        let vars = o.variables.unwrap_or_default();
        let prompt = match o.prompt.or(t.prompt.clone()) {
            Some(text) => Some(render_template(&text, &vars).map_err(|name| {
                CoreError::validation(
                    &format!("variables.{name}"),
                    format!(
                        "the template needs a value for {{{{{name}}}}}; pass it in `variables`"
                    ),
                )
                .with_details(json!([{"path": format!("variables.{name}"),
                    "message": format!("missing value for the template variable {{{{{name}}}}}"),
                    "variable": name}]))
            })?),
            None => None,
        };
        let env = match (&t.env, o.env) {
            (None, None) => None,
            (base, over) => {
                let mut m = base.clone().unwrap_or_default();
                m.extend(over.unwrap_or_default());
                Some(m)
            }
        };
        Ok(CreateSessionRequest {
            work_dir: o.work_dir.unwrap_or_else(|| t.work_dir.clone()),
            name: o.name,
            prompt,
            agent: o.agent.or(t.agent.clone()),
            model: o.model.or(t.model.clone()),
            permission_mode: o.permission_mode.or(t.permission_mode.clone()),
            permission_profile: t.permission_profile.clone(),
            env,
            stall_threshold_ms: t.stall_threshold_ms,
            memory_keys: t.memory_keys.clone(),
            reuse: o.reuse,
            ..Default::default()
        })
    }

    /// `POST /v1/templates/:id/sessions`: behaves exactly like `POST /v1/sessions`.
    pub async fn create_from_template(
        &self,
        p: &Principal,
        id: &str,
        o: TemplateSessionRequest,
    ) -> CoreResult<(SessionInfo, bool)> {
        let (t, _) = self.load_template(p, id).await?;
        let req = Self::template_create_request(&t, o)?;
        self.create(p, req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_and_rendering() {
        let text = "Fix {{ issue }} in {{repo}} ({{issue}}) {{stages.a.output}} {{}} {{x y}}";
        assert_eq!(
            template_variables(text),
            vec!["issue", "repo", "stages.a.output"]
        );
        let vars = BTreeMap::from([
            ("issue".to_owned(), "#12".to_owned()),
            ("repo".to_owned(), "aegis".to_owned()),
            ("stages.a.output".to_owned(), "A".to_owned()),
        ]);
        assert_eq!(
            render_template(text, &vars).unwrap_or_default(),
            "Fix #12 in aegis (#12) A {{}} {{x y}}"
        );
        let missing = BTreeMap::from([("issue".to_owned(), "1".to_owned())]);
        assert_eq!(render_template(text, &missing), Err("repo".to_owned()));
        assert_eq!(placeholders("{{{a}}}").len(), 1);
        assert_eq!(placeholders("{{a")[..], []);
    }

    #[test]
    fn starters() {
        let names: Vec<String> = starter_templates().into_iter().map(|t| t.name).collect();
        assert_eq!(
            names,
            vec!["code-reviewer", "ci-runner", "pr-reviewer", "docs-writer"]
        );
        assert_eq!(
            starter_template("pr-reviewer").map(|t| t.variables),
            Some(vec!["branch".to_owned(), "base".to_owned()])
        );
        assert!(starter_template_request("docs-writer", "/w").is_some());
        assert!(starter_template("nope").is_none());
    }
}
