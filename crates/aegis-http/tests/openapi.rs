//! The OpenAPI document covers every registered route, and the committed copy
//! (`docs/openapi.json` at the repository root) matches the generated one.
//!
//! Regenerate the committed copy with `UPDATE_OPENAPI=1 cargo test -p aegis-http --test openapi`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use aegis_http::openapi::{document, document_json, operation};
use aegis_http::{HttpMethod, route_table};

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json")
}

#[test]
fn every_registered_route_is_documented_and_nothing_else() {
    let doc = document();
    let table = route_table();
    let mut missing = Vec::new();
    let mut registered = BTreeSet::new();
    for route in table.iter().filter(|r| r.documented) {
        assert!(
            registered.insert((route.method, route.path)),
            "{} {} registered twice",
            route.method.as_str(),
            route.path
        );
        match operation(&doc, route.method, route.path) {
            None => missing.push(format!("{} {}", route.method.as_str(), route.path)),
            Some(op) => {
                assert!(
                    op.operation_id.is_some(),
                    "{} {} has no operationId",
                    route.method.as_str(),
                    route.path
                );
                assert!(
                    op.responses.responses.contains_key("4XX"),
                    "{} {} lacks the error envelope",
                    route.method.as_str(),
                    route.path
                );
            }
        }
    }
    assert!(
        missing.is_empty(),
        "routes missing from the OpenAPI document: {missing:?}"
    );

    // And no documented operation without a route.
    let mut phantom = Vec::new();
    for (path, item) in &doc.paths.paths {
        for (method, present) in [
            (HttpMethod::Get, item.get.is_some()),
            (HttpMethod::Post, item.post.is_some()),
            (HttpMethod::Patch, item.patch.is_some()),
            (HttpMethod::Put, item.put.is_some()),
            (HttpMethod::Delete, item.delete.is_some()),
        ] {
            if present && !registered.contains(&(method, path.as_str())) {
                phantom.push(format!("{} {path}", method.as_str()));
            }
        }
        assert!(
            item.options.is_none() && item.head.is_none() && item.trace.is_none(),
            "{path}: unexpected method documented"
        );
    }
    assert!(
        phantom.is_empty(),
        "documented but not registered: {phantom:?}"
    );

    // Operation ids are unique.
    let mut ids = BTreeSet::new();
    for route in &table {
        if let Some(op) = operation(&doc, route.method, route.path) {
            let id = op.operation_id.clone().unwrap_or_default();
            assert!(ids.insert(id.clone()), "duplicate operationId {id}");
        }
    }
}

#[test]
fn the_document_is_openapi_3_1_with_the_main_schemas() {
    let v: serde_json::Value = serde_json::from_str(document_json()).expect("valid JSON");
    assert!(v["openapi"].as_str().unwrap_or("").starts_with("3.1"));
    let schemas = &v["components"]["schemas"];
    for name in [
        "ErrorBody",
        "SessionInfo",
        "SessionList",
        "CreateSessionRequest",
        "SendRequest",
        "SendResponse",
        "ApproveRequest",
        "DecisionResponse",
        "ReadResponse",
        "TranscriptEntry",
        "EventLogPage",
        "EventEnvelope",
        "HandshakeResponse",
        "PermissionRequestDto",
        "SessionHealth",
    ] {
        assert!(schemas[name].is_object(), "schema {name} missing");
    }
    // References all resolve.
    let text = document_json();
    for part in text.split("\"$ref\": \"#/components/schemas/").skip(1) {
        let name = part.split('"').next().unwrap_or("");
        assert!(schemas[name].is_object(), "dangling $ref to {name}");
    }
    assert_eq!(
        v["paths"]["/v1/sessions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
            ["$ref"],
        "#/components/schemas/CreateSessionRequest"
    );
    assert!(
        v["paths"]["/v1/health"]["get"]["security"].is_null(),
        "health is public"
    );
    assert!(v["paths"]["/v1/sessions"]["get"]["security"].is_array());
}

#[test]
fn committed_document_matches_the_generated_one() {
    let path = committed_path();
    let generated = document_json();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::create_dir_all(path.parent().expect("docs dir")).expect("create docs/");
        std::fs::write(&path, generated).expect("write docs/openapi.json");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json is out of date: run `UPDATE_OPENAPI=1 cargo test -p aegis-http --test openapi` and commit the result"
    );
}

/// The keys of `value` must be properties of schema `name` and its required keys present
/// (the documentation-only mirrors of domain values must not drift from the real JSON).
fn check_shape(doc: &serde_json::Value, name: &str, value: &serde_json::Value) {
    let schema = &doc["components"]["schemas"][name];
    assert!(schema.is_object(), "schema {name} missing");
    let props = schema["properties"].as_object().expect("object schema");
    let obj = value.as_object().expect("object value");
    for key in obj.keys() {
        assert!(props.contains_key(key), "{name}: `{key}` is not documented");
    }
    for req in schema["required"].as_array().into_iter().flatten() {
        let req = req.as_str().unwrap_or("");
        assert!(
            obj.contains_key(req),
            "{name}: required `{req}` missing from {value}"
        );
    }
}

#[test]
fn domain_value_mirrors_match_the_real_json() {
    use aegis_domain::{
        AvailableCommand, Location, PermissionOption, PermissionOptionKind, PlanEntry, ToolCall,
        ToolCallContent, ToolCallStatus, ToolKind, Usage,
    };
    let doc: serde_json::Value = serde_json::from_str(document_json()).expect("json");
    let call = ToolCall {
        tool_call_id: "t1".into(),
        title: "Write x".into(),
        tool_kind: ToolKind::SwitchMode,
        tool_name: Some("Write".into()),
        status: ToolCallStatus::InProgress,
        locations: vec![Location {
            path: "/x".into(),
            line: Some(3),
        }],
        content: vec![ToolCallContent::Text { text: "hi".into() }],
        raw_input: Some(serde_json::json!({"a": 1})),
        raw_output: Some(serde_json::json!(null)),
    };
    let v = serde_json::to_value(&call).expect("tool call");
    check_shape(&doc, "ToolCall", &v);
    check_shape(&doc, "Location", &v["locations"][0]);
    let kinds = doc["components"]["schemas"]["ToolKind"]["enum"].clone();
    assert!(
        kinds.as_array().is_some_and(|k| k.contains(&v["toolKind"])),
        "{kinds}"
    );
    let usage = Usage {
        cost_usd: Some(0.1),
        cost_source: Some("agent".into()),
        context_used: Some(1),
        context_size: Some(2),
        ..Usage::default()
    };
    check_shape(&doc, "Usage", &serde_json::to_value(&usage).expect("usage"));
    let option = PermissionOption {
        option_id: "o".into(),
        name: "Allow".into(),
        kind: PermissionOptionKind::AllowAlways,
    };
    check_shape(
        &doc,
        "PermissionOption",
        &serde_json::to_value(&option).expect("option"),
    );
    let cmd = AvailableCommand {
        name: "help".into(),
        description: "Help".into(),
        input: Some(serde_json::json!({"hint": "x"})),
    };
    check_shape(
        &doc,
        "AvailableCommand",
        &serde_json::to_value(&cmd).expect("cmd"),
    );
    let plan = PlanEntry {
        content: "c".into(),
        priority: "high".into(),
        status: "pending".into(),
    };
    check_shape(
        &doc,
        "PlanEntry",
        &serde_json::to_value(&plan).expect("plan"),
    );
}
