//! Extractors whose every rejection is the error envelope (never axum's rejection texts).
//!
//! * [`Caller`]: the principal of the request (the one place authentication plugs in).
//! * [`JsonBody`]: a strict JSON body (415 / 413 / 400 with `details: [{path, message}]`).
//! * [`EmptyBody`]: the body of POST routes documented with request "—".
//! * [`QueryParams`]: the raw query with typed, range-checked getters (400 naming the field).
//! * [`SessionId`]: the `{id}` of a session route, checked to be a UUID (400 `INVALID_SESSION_ID`).
//! * [`ClientIp`], [`RequestId`].

use std::net::{IpAddr, SocketAddr};

use aegis_core::Principal;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Query, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{ApiError, issue};

// ---------------------------------------------------------------------------------------------
// Caller
// ---------------------------------------------------------------------------------------------

/// The authenticated caller.
///
/// Until authentication lands every request acts as the zero-config principal `local`
/// (api §5.2). Authentication replaces this one extractor.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if let Some(p) = parts.extensions.get::<Principal>() {
            return Ok(Caller(p.clone()));
        }
        if parts.extensions.get::<Anonymous>().is_some() {
            // A public route reached without a credential while auth is enabled.
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "Authentication required: send Authorization: Bearer <master token or API key>",
            ));
        }
        Ok(Caller(Principal::local()))
    }
}

/// Set by the auth middleware on requests that carry no valid credential (public routes while
/// authentication is enabled): [`Caller`] then refuses instead of falling back to `local`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anonymous;

// ---------------------------------------------------------------------------------------------
// Request id, client ip
// ---------------------------------------------------------------------------------------------

/// The request id (api §1.1), set by the conventions middleware.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(|| RequestId(uuid::Uuid::new_v4().to_string())))
    }
}

/// Whether an incoming `X-Request-Id` is acceptable: `^[A-Za-z0-9._-]{1,128}$`.
pub fn valid_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The client address: the socket peer when the server was started with connect info.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // The auth middleware resolved it (socket peer, or `X-Forwarded-For` with trustProxy).
        if let Some(ip) = parts.extensions.get::<ClientIp>() {
            return Ok(*ip);
        }
        Ok(ClientIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ci| ci.0.ip()),
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Bodies
// ---------------------------------------------------------------------------------------------

/// A strict JSON body: `T` is deserialised with its serde rules (unknown fields are rejected by
/// `deny_unknown_fields` on the DTOs).
///
/// * body larger than the limit → 413 `PAYLOAD_TOO_LARGE`;
/// * empty body (or only whitespace) → parsed as `{}`, whatever the Content-Type, so bodies whose
///   fields are all optional may be omitted and a missing required field is reported by name;
/// * otherwise a Content-Type other than JSON (`application/json`, `application/*+json`) → 415;
/// * malformed JSON, wrong types, unknown or missing fields → 400 `VALIDATION_ERROR` with
///   `details: [{path, message}]`.
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = content_type(req.headers());
        let bytes = read_body(req, state).await?;
        let trimmed = bytes.trim_ascii();
        if trimmed.is_empty() {
            return parse_json(b"{}").map(JsonBody);
        }
        if !is_json_content_type(content_type.as_deref()) {
            return Err(ApiError::unsupported_media_type(content_type.as_deref()));
        }
        parse_json(trimmed).map(JsonBody)
    }
}

/// The body of a POST route documented with request "—": an empty body or `{}` is accepted with
/// or without a Content-Type (api §1.1). Anything else is checked like a strict JSON object
/// without fields: 415 without a JSON Content-Type, else 400 naming each unexpected field.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmptyBody;

impl<S: Send + Sync> FromRequest<S> for EmptyBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = content_type(req.headers());
        let bytes = read_body(req, state).await?;
        let trimmed = bytes.trim_ascii();
        if trimmed.is_empty() {
            return Ok(EmptyBody);
        }
        let parsed = serde_json::from_slice::<Value>(trimmed);
        if let Ok(Value::Object(map)) = &parsed
            && map.is_empty()
        {
            return Ok(EmptyBody);
        }
        if !is_json_content_type(content_type.as_deref()) {
            return Err(ApiError::unsupported_media_type(content_type.as_deref()));
        }
        match parsed {
            Ok(Value::Object(map)) => Err(ApiError::validation_issues(
                map.keys()
                    .map(|k| issue(k, "unknown field: this request takes no body fields"))
                    .collect(),
            )),
            Ok(_) => Err(ApiError::validation("", "expected a JSON object")),
            Err(e) => Err(ApiError::validation(
                "",
                format!("malformed JSON: {}", strip_position(&e.to_string())),
            )),
        }
    }
}

/// The body limit in force, recorded in the request extensions by the conventions middleware
/// (the limit itself is enforced by axum's `DefaultBodyLimit` layer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimit(pub usize);

async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    let limit = req
        .extensions()
        .get::<BodyLimit>()
        .map_or(crate::DEFAULT_MAX_BODY_BYTES, |l| l.0);
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::body_too_large(limit)
        } else {
            ApiError::validation("", "the request body could not be read")
        }
    })
}

fn content_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// `application/json` or `application/<anything>+json`, with any parameters.
pub fn is_json_content_type(ct: Option<&str>) -> bool {
    let Some(ct) = ct else { return false };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Parse a JSON document into `T`, mapping every failure to a 400 `VALIDATION_ERROR` whose
/// issue names the JSON path (`permissionProfile.rules[0].tool`; `""` = the whole body).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(value) => value,
        Err(err) => {
            let path = render_path(err.path());
            let inner = err.into_inner();
            return Err(json_error(&path, &inner));
        }
    };
    if let Err(e) = de.end() {
        return Err(json_error("", &e));
    }
    Ok(value)
}

fn render_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push('?');
            }
        }
    }
    out
}

fn join_path(parent: &str, field: &str) -> String {
    if parent == field || parent.ends_with(&format!(".{field}")) {
        // serde_path_to_error already entered the field (unknown fields).
        parent.to_owned()
    } else if parent.is_empty() {
        field.to_owned()
    } else {
        format!("{parent}.{field}")
    }
}

/// Text between the first pair of backticks: serde's "unknown field `x`, expected …".
fn backticked(msg: &str) -> Option<&str> {
    let start = msg.find('`')? + 1;
    let len = msg[start..].find('`')?;
    Some(&msg[start..start + len])
}

fn json_error(path: &str, e: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    let msg = strip_position(&e.to_string());
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::validation(path, format!("malformed JSON: {msg}"))
        }
        Category::Data => {
            if msg.starts_with("unknown field")
                && let Some(field) = backticked(&msg)
            {
                ApiError::validation(&join_path(path, field), msg.clone())
            } else if msg.starts_with("missing field")
                && let Some(field) = backticked(&msg)
            {
                ApiError::validation(&join_path(path, field), "is required")
            } else {
                ApiError::validation(path, msg)
            }
        }
    }
}

/// serde_json appends " at line L column C"; the path already says where.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) if msg[i..].contains(" column ") => msg[..i].to_owned(),
        _ => msg.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Path
// ---------------------------------------------------------------------------------------------

/// The `{id}` of a session route: a UUID (any case), returned lowercase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionId(pub String);

/// Validate a session id: the hyphenated UUID form, any case → lowercase.
pub fn parse_session_id(raw: &str) -> Result<String, ApiError> {
    if raw.len() == 36
        && let Ok(uuid) = uuid::Uuid::try_parse(raw)
    {
        return Ok(uuid.hyphenated().to_string());
    }
    Err(ApiError::invalid_session_id(raw))
}

impl<S: Send + Sync> FromRequestParts<S> for SessionId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let raw = path_param(parts, state, "id").await?;
        parse_session_id(&raw).map(SessionId)
    }
}

/// A named path parameter, percent-decoded.
pub async fn path_param<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
    name: &str,
) -> Result<String, ApiError> {
    let params = RawPathParams::from_request_parts(parts, state)
        .await
        .map_err(|_| ApiError::validation(name, "path parameter is not valid UTF-8"))?;
    params
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .ok_or_else(|| ApiError::internal(format!("route has no path parameter {name}")))
}

/// The `{requestId}` of `/v1/permissions/{requestId}` (not a session route: no UUID check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionRequestId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PermissionRequestId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        path_param(parts, state, "requestId")
            .await
            .map(PermissionRequestId)
    }
}

// ---------------------------------------------------------------------------------------------
// Query
// ---------------------------------------------------------------------------------------------

/// The query string as (name, value) pairs with typed getters. Unknown parameters are ignored;
/// an invalid value of a known one → 400 `VALIDATION_ERROR` naming it. An empty value counts as
/// absent. When a name repeats, the first occurrence is used.
#[derive(Debug, Clone, Default)]
pub struct QueryParams(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        QueryParams::from_query(parts.uri.query().unwrap_or(""))
    }
}

/// Largest `page` accepted: the spec sets no maximum, but page arithmetic must not overflow
/// and no list is that long.
pub const PAGE_MAX: u64 = 1_000_000_000;

/// Default and maximum of page-list `limit` (api §1.4).
pub const PAGE_LIMIT_DEFAULT: u64 = 20;
pub const PAGE_LIMIT_MAX: u64 = 100;

impl QueryParams {
    pub fn from_query(query: &str) -> Result<Self, ApiError> {
        let uri: axum::http::Uri = format!("/?{query}")
            .parse()
            .map_err(|_| ApiError::validation("", "malformed query string"))?;
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(&uri)
            .map_err(|_| ApiError::validation("", "malformed query string"))?;
        Ok(QueryParams(pairs))
    }

    /// The raw value of `name`; `None` when absent or empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// An owned string value.
    pub fn string(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_owned)
    }

    /// An optional integer within `min..=max`.
    pub fn opt_int(&self, name: &str, min: u64, max: u64) -> Result<Option<u64>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(raw) => parse_int(name, raw, min, max).map(Some),
        }
    }

    /// An integer within `min..=max`, `default` when absent.
    pub fn int(&self, name: &str, min: u64, max: u64, default: u64) -> Result<u64, ApiError> {
        Ok(self.opt_int(name, min, max)?.unwrap_or(default))
    }

    /// A cursor: an integer ≥ 0.
    pub fn cursor(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.opt_int(name, 0, u64::MAX)
    }

    /// `page`: integer 1–[`PAGE_MAX`], default 1.
    pub fn page(&self) -> Result<u64, ApiError> {
        self.int("page", 1, PAGE_MAX, 1)
    }

    /// `limit` (alias `pageSize`): integer `1..=max`, `default` when absent.
    pub fn limit(&self, default: u64, max: u64) -> Result<u64, ApiError> {
        if self.get("limit").is_some() {
            self.int("limit", 1, max, default)
        } else {
            self.int("pageSize", 1, max, default)
        }
    }

    /// `page` and `limit` of a page list (api §1.4: limit 1–100, default 20).
    pub fn pagination(&self) -> Result<(u64, u64), ApiError> {
        Ok((
            self.page()?,
            self.limit(PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX)?,
        ))
    }

    /// A boolean: `true`/`false`/`1`/`0` (any case).
    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(raw) => match raw.to_ascii_lowercase().as_str() {
                "true" | "1" => Ok(Some(true)),
                "false" | "0" => Ok(Some(false)),
                _ => Err(ApiError::validation(
                    name,
                    format!("must be true or false, got \"{}\"", shorten(raw)),
                )),
            },
        }
    }

    /// A comma list (items trimmed, empty items dropped); empty when absent.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.get(name)
            .map(|raw| {
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// One value of a fixed set.
    pub fn one_of(&self, name: &str, allowed: &[&str]) -> Result<Option<String>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(raw) if allowed.contains(&raw) => Ok(Some(raw.to_owned())),
            Some(raw) => Err(ApiError::validation(
                name,
                format!(
                    "must be one of {}, got \"{}\"",
                    allowed.join(", "),
                    shorten(raw)
                ),
            )),
        }
    }
}

fn shorten(raw: &str) -> String {
    raw.chars().take(64).collect()
}

/// Parse a decimal integer in `min..=max`; the error names the parameter and the range.
pub fn parse_int(name: &str, raw: &str, min: u64, max: u64) -> Result<u64, ApiError> {
    let range = if max == u64::MAX {
        format!("an integer ≥ {min}")
    } else {
        format!("an integer from {min} to {max}")
    };
    let parsed = if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
        raw.parse::<u64>().ok()
    } else {
        None
    };
    match parsed {
        Some(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(ApiError::validation(
            name,
            format!("must be {range}, got \"{}\"", shorten(raw)),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aegis_api_types::{CreateSessionRequest, SendRequest};

    fn q(s: &str) -> QueryParams {
        QueryParams::from_query(s).expect("query parses")
    }

    fn issue_path(e: &ApiError) -> String {
        e.details.as_ref().expect("details")[0]["path"]
            .as_str()
            .expect("path")
            .to_owned()
    }

    #[test]
    fn pagination_defaults_and_errors_name_the_field() {
        assert_eq!(q("").pagination().ok(), Some((1, 20)));
        assert_eq!(q("page=3&limit=100").pagination().ok(), Some((3, 100)));
        assert_eq!(q("pageSize=7").pagination().ok(), Some((1, 7)));
        assert_eq!(q("limit=5&pageSize=7").pagination().ok(), Some((1, 5)));
        assert_eq!(q("page=&limit=").pagination().ok(), Some((1, 20)));
        for (query, field) in [
            ("page=0", "page"),
            ("page=-1", "page"),
            ("page=abc", "page"),
            ("page=1.5", "page"),
            ("page=99999999999999999999999", "page"),
            ("page=9223372036854775808", "page"),
            ("page=1000000001", "page"),
            ("limit=0", "limit"),
            ("limit=101", "limit"),
            ("limit=abc", "limit"),
            ("pageSize=101", "pageSize"),
        ] {
            let e = q(query).pagination().expect_err(query);
            assert_eq!(e.code, "VALIDATION_ERROR", "{query}");
            assert_eq!(issue_path(&e), field, "{query}");
            assert!(e.message.contains(field), "{query}: {}", e.message);
        }
    }

    #[test]
    fn other_limits_and_values() {
        assert_eq!(q("").limit(200, 1000).ok(), Some(200));
        assert_eq!(q("limit=1000").limit(200, 1000).ok(), Some(1000));
        assert!(q("limit=1001").limit(200, 1000).is_err());
        assert_eq!(q("after=0").cursor("after").ok(), Some(Some(0)));
        assert!(q("after=-3").cursor("after").is_err());
        assert_eq!(q("force=TRUE").bool("force").ok(), Some(Some(true)));
        assert!(q("force=yes").bool("force").is_err());
        assert_eq!(q("kind=a,%20b,,c").list("kind"), vec!["a", "b", "c"]);
        assert_eq!(q("x=1&x=2").get("x"), Some("1"));
        assert!(
            q("status=bad")
                .one_of("status", &["pending", "all"])
                .is_err()
        );
    }

    #[test]
    fn json_errors_carry_paths() {
        let e = parse_json::<SendRequest>(br#"{"text": 5}"#).expect_err("type");
        assert_eq!(issue_path(&e), "text");
        let e = parse_json::<SendRequest>(br#"{"text": "a", "extra": 1}"#).expect_err("unknown");
        assert_eq!(issue_path(&e), "extra");
        let e = parse_json::<SendRequest>(b"{}").expect_err("missing");
        assert_eq!(issue_path(&e), "text");
        assert_eq!(
            e.details.as_ref().map(|d| d[0]["message"].clone()),
            Some(serde_json::json!("is required"))
        );
        let e = parse_json::<SendRequest>(b"{\"text\":").expect_err("syntax");
        assert!(e.message.contains("malformed JSON"), "{}", e.message);
        let e = parse_json::<SendRequest>(br#"{"text":"a"} x"#).expect_err("trailing");
        assert!(e.message.contains("malformed JSON"), "{}", e.message);
        let e = parse_json::<CreateSessionRequest>(
            br#"{"workDir":"/x","permissionProfile":{"rules":[{"tool":"a","behavior":"maybe"}]}}"#,
        )
        .expect_err("enum");
        assert_eq!(issue_path(&e), "permissionProfile.rules[0].behavior");
        let e = parse_json::<CreateSessionRequest>(br#"[]"#).expect_err("root");
        assert_eq!(issue_path(&e), "");
    }

    #[test]
    fn request_ids_and_session_ids() {
        assert!(valid_request_id("abc-DEF_1.2"));
        assert!(!valid_request_id(""));
        assert!(!valid_request_id("a b"));
        assert!(!valid_request_id(&"a".repeat(129)));
        assert!(valid_request_id(&"a".repeat(128)));
        assert_eq!(
            parse_session_id("6F9619FF-8B86-4011-B42D-00C04FC964FF").ok(),
            Some("6f9619ff-8b86-4011-b42d-00c04fc964ff".to_owned())
        );
        assert!(parse_session_id("6f9619ff8b864011b42d00c04fc964ff").is_err());
        assert!(parse_session_id("a1b2c3d4").is_err());
    }

    #[test]
    fn json_content_types() {
        assert!(is_json_content_type(Some("application/json")));
        assert!(is_json_content_type(Some(
            "Application/JSON; charset=utf-8"
        )));
        assert!(is_json_content_type(Some("application/merge-patch+json")));
        assert!(!is_json_content_type(Some("text/plain")));
        assert!(!is_json_content_type(Some(
            "application/x-www-form-urlencoded"
        )));
        assert!(!is_json_content_type(None));
    }
}
