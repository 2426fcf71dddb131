//! Pipelines, batch creation, templates and the memory bridge over real HTTP with the scripted
//! agent; plus kill -9 of the real `ag serve` process in the middle of a pipeline.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aegis_e2e::{TestServer, agent_text};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn stage<'a>(p: &'a Value, name: &str) -> &'a Value {
    p["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no stage {name} in {p}"))
}

fn sid(p: &Value, name: &str) -> String {
    stage(p, name)["sessionId"]
        .as_str()
        .unwrap_or_else(|| panic!("stage {name} has no session: {p}"))
        .to_owned()
}

/// Wait, driven by the event bus, until the pipeline satisfies `pred`.
async fn wait_pipeline(
    s: &TestServer,
    id: &str,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let mut rx = s.svc.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, v) = s.get(&format!("/v1/pipelines/{id}")).await;
        if pred(&v) {
            return v;
        }
        if tokio::time::timeout_at(deadline, rx.recv()).await.is_err() {
            panic!("pipeline {id}: {what} not reached: {v:#}");
        }
    }
}

/// The `pipeline` events of one pipeline in the global log, once `pred` holds for them.
async fn pipeline_events(s: &TestServer, id: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let mut rx = s.svc.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, log) = s.get("/v1/events/log?types=pipeline&limit=1000").await;
        let evs: Vec<Value> = log["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["data"]["pipelineId"] == id)
            .cloned()
            .collect();
        if pred(&evs) {
            return evs;
        }
        if tokio::time::timeout_at(deadline, rx.recv()).await.is_err() {
            panic!("pipeline {id}: events not as expected: {evs:#?}");
        }
    }
}

async fn create_pipeline(s: &TestServer, body: Value) -> Value {
    let (st, p) = s.post("/v1/pipelines", body).await;
    assert_eq!(st, StatusCode::CREATED, "{p}");
    p
}

/// The text of the first user message of a session (the prompt it was given).
async fn first_prompt(s: &TestServer, session: &str) -> String {
    let (_, t) = s
        .get(&format!(
            "/v1/sessions/{session}/transcript?kind=user_message&limit=10"
        ))
        .await;
    t["messages"][0]["text"].as_str().unwrap_or("").to_owned()
}

// ---------------------------------------------------------------------------------------------
// Pipelines
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn diamond_runs_b_and_c_in_parallel_and_feeds_outputs_to_d() {
    let s = TestServer::start().await;
    let p = create_pipeline(
        &s,
        json!({"name": "diamond", "workDir": s.work, "stages": [
            {"name": "A", "prompt": "alpha task"},
            {"name": "B", "prompt": "slow:25 beta after {{stages.A.output}}", "dependsOn": ["A"]},
            {"name": "C", "prompt": "slow:25 gamma", "dependsOn": ["A"]},
            {"name": "D", "prompt": "delta joins [{{ stages.A.output }}] and [{{stages.B.output}}]",
             "dependsOn": ["B", "C"]},
        ]}),
    )
    .await;
    let id = p["id"].as_str().unwrap().to_owned();
    assert_eq!(p["status"], "running");
    assert_eq!(p["currentStage"], "execute");
    assert_eq!(stage(&p, "A")["status"], "running", "A starts at once: {p}");
    assert_eq!(stage(&p, "B")["status"], "pending");
    assert_eq!(stage(&p, "D")["dependsOn"], json!(["B", "C"]));

    let done = wait_pipeline(&s, &id, "completed", |v| v["status"] != "running").await;
    assert_eq!(done["status"], "completed", "{done:#}");
    assert_eq!(done["currentStage"], "done");
    assert!(done["finishedAt"].as_u64().is_some());
    for name in ["A", "B", "C", "D"] {
        let st = stage(&done, name);
        assert_eq!(st["status"], "completed", "{name}: {st}");
        assert_eq!(st["attempts"], 1);
        assert!(st["startedAt"].as_u64().unwrap() <= st["completedAt"].as_u64().unwrap());
    }
    // A's output is the text of its turn's agent messages.
    let a_out = stage(&done, "A")["output"].as_str().unwrap().to_owned();
    assert_eq!(a_out, "Scripted reply: alpha task");
    let b_out = stage(&done, "B")["output"].as_str().unwrap().to_owned();
    assert!(
        b_out.starts_with("chunk 1/25") && b_out.contains("chunk 25/25"),
        "{b_out}"
    );

    // B and C ran in parallel: their running intervals overlap.
    let (b, c) = (stage(&done, "B"), stage(&done, "C"));
    let (bs, be) = (
        b["startedAt"].as_u64().unwrap(),
        b["completedAt"].as_u64().unwrap(),
    );
    let (cs, ce) = (
        c["startedAt"].as_u64().unwrap(),
        c["completedAt"].as_u64().unwrap(),
    );
    assert!(
        bs < ce && cs < be,
        "B [{bs}, {be}] and C [{cs}, {ce}] do not overlap"
    );
    // Both started only after A completed.
    let a_end = stage(&done, "A")["completedAt"].as_u64().unwrap();
    assert!(bs >= a_end && cs >= a_end);

    // D's prompt holds A's and B's outputs; B's held A's.
    let d_prompt = first_prompt(&s, &sid(&done, "D")).await;
    assert!(d_prompt.contains(&format!("[{a_out}]")), "{d_prompt}");
    assert!(d_prompt.contains(&format!("[{b_out}]")), "{d_prompt}");
    let b_prompt = first_prompt(&s, &sid(&done, "B")).await;
    assert_eq!(b_prompt, format!("slow:25 beta after {a_out}"));

    // Every stage ran in its own new session named after the pipeline.
    let (_, d) = s.get(&format!("/v1/sessions/{}", sid(&done, "D"))).await;
    assert_eq!(d["name"], "pipeline-diamond-D");
    let ids: std::collections::BTreeSet<String> =
        ["A", "B", "C", "D"].iter().map(|n| sid(&done, n)).collect();
    assert_eq!(ids.len(), 4);

    // Global `pipeline` events for every change, no session id. (The snapshot is published
    // just before the events are appended: wait for the last one.)
    let log = pipeline_events(&s, &id, |evs| {
        evs.last()
            .is_some_and(|e| e["data"]["status"] == "completed" && e["data"]["stage"].is_null())
    })
    .await;
    let evs: Vec<&Value> = log.iter().collect();
    assert!(
        evs.iter()
            .all(|e| e["sessionId"].is_null() && e["event"] == "pipeline")
    );
    for name in ["A", "B", "C", "D"] {
        for status in ["running", "completed"] {
            assert!(
                evs.iter().any(|e| e["data"]["stage"]["name"] == name
                    && e["data"]["stage"]["status"] == status),
                "no {name}/{status} event"
            );
        }
    }
    let last = evs.last().unwrap();
    assert_eq!(last["data"]["status"], "completed");

    // Listed, and filterable by status.
    let (_, all) = s.get("/v1/pipelines?status=completed").await;
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == id.as_str())
    );
    let (_, none) = s.get("/v1/pipelines?status=running").await;
    assert!(none.as_array().unwrap().is_empty());
    let (st, _) = s.get("/v1/pipelines?status=bogus").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    s.stop().await;
}

#[tokio::test]
async fn invalid_pipelines_are_rejected_naming_the_stage() {
    let s = TestServer::start().await;
    let srv = &s;
    let post = |stages: Value| {
        let body = json!({"name": "bad", "workDir": srv.work, "stages": stages});
        async move { srv.post("/v1/pipelines", body).await }
    };
    // A cycle.
    let (st, e) = post(json!([
        {"name": "A", "prompt": "a", "dependsOn": ["C"]},
        {"name": "B", "prompt": "b", "dependsOn": ["A"]},
        {"name": "C", "prompt": "c", "dependsOn": ["B"]},
    ]))
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    assert_eq!(e["code"], "VALIDATION_ERROR");
    let msg = e["message"].as_str().unwrap();
    assert!(
        msg.contains("cycle") && msg.contains("A → C → B → A"),
        "{msg}"
    );
    assert_eq!(e["details"][0]["path"], "stages[0].dependsOn");
    // A self-dependency is a cycle too.
    let (st, e) = post(json!([{"name": "S", "prompt": "s", "dependsOn": ["S"]}])).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("cycle through stage 'S'"),
        "{e}"
    );
    // Unknown dependency.
    let (st, e) = post(json!([
        {"name": "A", "prompt": "a"},
        {"name": "B", "prompt": "b", "dependsOn": ["nope"]},
    ]))
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("stage 'B' depends on unknown stage 'nope'"),
        "{e}"
    );
    assert_eq!(e["details"][0]["path"], "stages[1].dependsOn");
    // Duplicate name.
    let (st, e) = post(json!([{"name": "A", "prompt": "a"}, {"name": "A", "prompt": "b"}])).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("duplicate stage name 'A'"),
        "{e}"
    );
    // An output reference to a stage that is not a dependency.
    let (st, e) = post(json!([
        {"name": "A", "prompt": "a"},
        {"name": "B", "prompt": "use {{stages.A.output}}"},
    ]))
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let msg = e["message"].as_str().unwrap();
    assert!(
        msg.contains("stage 'B'") && msg.contains("stages.A.output"),
        "{msg}"
    );
    // Bad stage name, empty stages, unknown field, bad workDir.
    let (st, _) = post(json!([{"name": "a b", "prompt": "x"}])).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = post(json!([])).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, e) = s
        .post(
            "/v1/pipelines",
            json!({"name": "x", "workDir": s.work, "stages": [{"name": "A", "prompt": "a", "bogus": 1}]}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    let (st, e) = s
        .post(
            "/v1/pipelines",
            json!({"name": "x", "workDir": s.work, "stages": [
                {"name": "A", "prompt": "a", "workDir": "/definitely/not/here"}]}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(e["code"], "INVALID_WORKDIR");
    assert!(e["message"].as_str().unwrap().contains("stage 'A'"), "{e}");
    let (st, e) = s
        .post(
            "/v1/pipelines",
            json!({"name": "x", "stages": [{"name": "A", "prompt": "a"}]}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("stage 'A' has no workDir"),
        "{e}"
    );
    // Nothing was created; unknown ids are 404.
    let (_, all) = s.get("/v1/pipelines").await;
    assert_eq!(all, json!([]));
    let (st, e) = s.get("/v1/pipelines/not-a-pipeline").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(e["code"], "NOT_FOUND");
    let (st, _) = s.post_empty("/v1/pipelines/nope/cancel").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test]
async fn stage_timeout_fails_the_stage_and_cancels_siblings_under_stop() {
    let s = TestServer::start().await;
    let p = create_pipeline(
        &s,
        json!({"name": "timeouts", "workDir": s.work, "stages": [
            {"name": "X", "prompt": "hang", "timeoutMs": 800},
            {"name": "Y", "prompt": "slow:500"},
            {"name": "Z", "prompt": "after {{stages.X.output}}", "dependsOn": ["X"]},
        ]}),
    )
    .await;
    let id = p["id"].as_str().unwrap().to_owned();
    let started = Instant::now();
    let done = wait_pipeline(&s, &id, "failed", |v| v["status"] != "running").await;
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(8),
        "Y was not cancelled: {elapsed:?}"
    );
    assert_eq!(done["status"], "failed", "{done:#}");
    let x = stage(&done, "X");
    assert_eq!(x["status"], "failed");
    assert_eq!(x["error"], "stage_timeout");
    let ran = x["completedAt"].as_u64().unwrap() - x["startedAt"].as_u64().unwrap();
    assert!((800..3000).contains(&ran), "timed out after {ran} ms");
    let y = stage(&done, "Y");
    assert_eq!(y["status"], "cancelled", "{y}");
    assert!(y["error"].as_str().unwrap().contains("'X' failed"), "{y}");
    let z = stage(&done, "Z");
    assert_eq!(z["status"], "skipped");
    assert!(z["sessionId"].is_null());
    // Both running turns were interrupted: the sessions go back to idle.
    let (xs, ys) = (sid(&done, "X"), sid(&done, "Y"));
    s.wait_status(&xs, "idle").await;
    s.wait_status(&ys, "idle").await;
    // A finished pipeline cannot be cancelled.
    let (st, e) = s.post_empty(&format!("/v1/pipelines/{id}/cancel")).await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert_eq!(e["code"], "PIPELINE_FINISHED");
    s.stop().await;
}

#[tokio::test]
async fn approval_gate_holds_until_approved() {
    let s = TestServer::start().await;
    let p = create_pipeline(
        &s,
        json!({"name": "gated", "workDir": s.work, "stages": [
            {"name": "plan", "prompt": "make a plan"},
            {"name": "ship", "prompt": "ship it: {{stages.plan.output}}", "dependsOn": ["plan"], "gate": true},
        ]}),
    )
    .await;
    let id = p["id"].as_str().unwrap().to_owned();
    assert_eq!(stage(&p, "ship")["gate"], true);
    assert_eq!(
        stage(&p, "ship")["awaitingApproval"],
        false,
        "not ready yet"
    );
    let held = wait_pipeline(&s, &id, "gate reached", |v| {
        stage(v, "ship")["awaitingApproval"] == true
    })
    .await;
    assert_eq!(stage(&held, "plan")["status"], "completed");
    assert_eq!(stage(&held, "ship")["status"], "pending");
    // It holds.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (_, still) = s.get(&format!("/v1/pipelines/{id}")).await;
    assert_eq!(still["status"], "running");
    assert_eq!(stage(&still, "ship")["status"], "pending");
    assert!(stage(&still, "ship")["sessionId"].is_null());
    // The gate wait was announced.
    pipeline_events(&s, &id, |evs| {
        evs.iter()
            .any(|e| e["data"]["stage"]["awaitingApproval"] == true)
    })
    .await;
    // Approving a stage without a gate, or an unknown stage, is refused.
    let (st, _) = s
        .post_empty(&format!("/v1/pipelines/{id}/stages/plan/approve"))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = s
        .post_empty(&format!("/v1/pipelines/{id}/stages/nope/approve"))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, a) = s
        .post_empty(&format!("/v1/pipelines/{id}/stages/ship/approve"))
        .await;
    assert_eq!(st, StatusCode::OK, "{a}");
    assert_eq!(stage(&a, "ship")["approved"], true);
    assert_eq!(
        stage(&a, "ship")["status"],
        "running",
        "starts at once: {a}"
    );
    let done = wait_pipeline(&s, &id, "completed", |v| v["status"] != "running").await;
    assert_eq!(done["status"], "completed", "{done:#}");
    let out = stage(&done, "ship")["output"].as_str().unwrap();
    assert!(
        out.starts_with("Scripted reply: ship it: Scripted reply: make a plan"),
        "{out}"
    );
    s.stop().await;
}

#[tokio::test]
async fn continue_skips_only_downstream_and_retries_rerun_in_new_sessions() {
    let s = TestServer::start().await;
    let p = create_pipeline(
        &s,
        json!({"name": "cont", "workDir": s.work, "onFailure": "continue", "stages": [
            {"name": "bad", "prompt": "fail", "retries": 1},
            {"name": "after-bad", "prompt": "x", "dependsOn": ["bad"]},
            {"name": "boom", "prompt": "crash"},
            {"name": "fine", "prompt": "all good"},
            {"name": "after-fine", "prompt": "then {{stages.fine.output}}", "dependsOn": ["fine"]},
        ]}),
    )
    .await;
    let id = p["id"].as_str().unwrap().to_owned();
    let done = wait_pipeline(&s, &id, "finished", |v| v["status"] != "running").await;
    assert_eq!(done["status"], "failed", "{done:#}");
    let bad = stage(&done, "bad");
    assert_eq!(bad["status"], "failed");
    assert!(
        bad["error"].as_str().unwrap().contains("scripted failure"),
        "{bad}"
    );
    assert_eq!(
        bad["previousSessionIds"].as_array().unwrap().len(),
        1,
        "{bad}"
    );
    assert_ne!(bad["previousSessionIds"][0], bad["sessionId"]);
    assert_eq!(stage(&done, "after-bad")["status"], "skipped");
    assert_eq!(stage(&done, "boom")["status"], "failed", "{done:#}");
    assert_eq!(stage(&done, "fine")["status"], "completed");
    assert_eq!(stage(&done, "after-fine")["status"], "completed");
    s.stop().await;
}

#[tokio::test]
async fn cancel_then_resume_reruns_only_unfinished_stages() {
    let s = TestServer::start().await;
    let p = create_pipeline(
        &s,
        json!({"name": "cr", "workDir": s.work, "stages": [
            {"name": "quick", "prompt": "quick one"},
            {"name": "long", "prompt": "slow:60"},
            {"name": "last", "prompt": "last {{stages.long.output}}", "dependsOn": ["long", "quick"]},
        ]}),
    )
    .await;
    let id = p["id"].as_str().unwrap().to_owned();
    wait_pipeline(&s, &id, "quick done", |v| {
        stage(v, "quick")["status"] == "completed"
    })
    .await;
    let (st, c) = s
        .post(
            &format!("/v1/pipelines/{id}/cancel"),
            json!({"killSessions": false}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{c}");
    assert_eq!(c["status"], "cancelled");
    assert_eq!(stage(&c, "long")["status"], "cancelled");
    assert_eq!(stage(&c, "last")["status"], "skipped");
    let quick_session = sid(&c, "quick");
    let long_session = sid(&c, "long");
    s.wait_status(&long_session, "idle").await;
    let (st, e) = s.post_empty(&format!("/v1/pipelines/{id}/cancel")).await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert_eq!(e["code"], "PIPELINE_FINISHED");

    let (st, r) = s.post_empty(&format!("/v1/pipelines/{id}/resume")).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["status"], "running");
    assert_eq!(stage(&r, "quick")["status"], "completed", "kept");
    assert_eq!(stage(&r, "long")["status"], "running");
    let done = wait_pipeline(&s, &id, "completed", |v| v["status"] != "running").await;
    assert_eq!(done["status"], "completed", "{done:#}");
    assert_eq!(
        sid(&done, "quick"),
        quick_session,
        "completed stages are not re-run"
    );
    assert_eq!(
        stage(&done, "long")["previousSessionIds"],
        json!([long_session])
    );
    let (st, e) = s.post_empty(&format!("/v1/pipelines/{id}/resume")).await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert_eq!(e["code"], "PIPELINE_FINISHED");
    s.stop().await;
}

#[tokio::test]
async fn concurrency_bounds_parallel_stages() {
    let s = TestServer::start().await;
    let p = create_pipeline(
        &s,
        json!({"name": "narrow", "workDir": s.work, "concurrency": 1, "stages": [
            {"name": "one", "prompt": "slow:10 one"},
            {"name": "two", "prompt": "slow:10 two"},
        ]}),
    )
    .await;
    assert_eq!(stage(&p, "one")["status"], "running");
    assert_eq!(stage(&p, "two")["status"], "pending");
    let id = p["id"].as_str().unwrap().to_owned();
    let done = wait_pipeline(&s, &id, "completed", |v| v["status"] != "running").await;
    assert_eq!(done["status"], "completed");
    let one_end = stage(&done, "one")["completedAt"].as_u64().unwrap();
    let two_start = stage(&done, "two")["startedAt"].as_u64().unwrap();
    assert!(
        two_start >= one_end,
        "ran in parallel despite concurrency 1"
    );
    s.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Templates
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn templates_crud_variables_and_missing_variable() {
    let s = TestServer::start().await;
    let (st, t) = s
        .post(
            "/v1/templates",
            json!({"name": "fixer", "description": "fix things", "workDir": s.work,
                   "prompt": "Fix {{issue}} in {{ area }}", "permissionMode": "acceptEdits"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{t}");
    let tid = t["id"].as_str().unwrap().to_owned();
    assert_eq!(t["variables"], json!(["issue", "area"]));
    assert_eq!(t["ownerKeyId"], "local");
    let (_, list) = s.get("/v1/templates").await;
    assert_eq!(list[0]["id"], tid.as_str());
    let (st, u) = s
        .http
        .put(s.url(&format!("/v1/templates/{tid}")))
        .json(&json!({"description": "fix bugs"}))
        .send()
        .await
        .map(|r| (r.status(), r))
        .unwrap();
    assert_eq!(st, StatusCode::OK);
    let u: Value = u.json().await.unwrap();
    assert_eq!(u["description"], "fix bugs");
    assert!(u["updatedAt"].as_u64() > t["updatedAt"].as_u64());

    // A missing variable → 400 naming it; nothing created.
    let (st, e) = s
        .post(
            &format!("/v1/templates/{tid}/sessions"),
            json!({"variables": {"issue": "#7"}}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    assert_eq!(e["code"], "VALIDATION_ERROR");
    assert_eq!(e["details"][0]["path"], "variables.area");
    assert!(e["message"].as_str().unwrap().contains("{{area}}"), "{e}");
    let (_, l) = s.get("/v1/sessions").await;
    assert_eq!(l["pagination"]["total"], 0);
    let (st, _) = s
        .post(
            &format!("/v1/templates/{tid}/sessions"),
            json!({"bogus": 1}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // Substituted.
    let (st, v) = s
        .post(
            &format!("/v1/templates/{tid}/sessions"),
            json!({"variables": {"issue": "#7", "area": "the parser"}, "name": "from-tpl"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["permissionMode"], "acceptEdits");
    assert_eq!(v["name"], "from-tpl");
    let session = v["id"].as_str().unwrap().to_owned();
    s.wait_status(&session, "idle").await;
    assert_eq!(first_prompt(&s, &session).await, "Fix #7 in the parser");
    let (_, r) = s.get(&format!("/v1/sessions/{session}/read?after=0")).await;
    assert!(agent_text(&r).contains("Scripted reply: Fix #7 in the parser"));

    // Copy from a session; workDir required otherwise.
    let (st, c) = s
        .post(
            "/v1/templates",
            json!({"name": "copy", "sessionId": session}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    assert_eq!(c["workDir"], v["workDir"]);
    assert_eq!(c["permissionMode"], "acceptEdits");
    let (st, _) = s.post("/v1/templates", json!({"name": "nodir"})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, e) = s
        .post(
            "/v1/templates",
            json!({"name": "bad-env", "workDir": s.work, "env": {"PATH": "/x"}}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");

    let (st, _) = s.delete(&format!("/v1/templates/{tid}")).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s.get(&format!("/v1/templates/{tid}")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Starter templates for `ag init`.
    let names: Vec<String> = aegis_core::starter_templates()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(
        names,
        ["code-reviewer", "ci-runner", "pr-reviewer", "docs-writer"]
    );
    s.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn memory_crud_prefix_scope_ttl_and_memory_keys() {
    let s = TestServer::start().await;
    let (st, m) = s
        .post(
            "/v1/memory",
            json!({"key": "project/lang", "value": "rust"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{m}");
    assert_eq!(m["ok"], true);
    assert_eq!(m["entry"]["namespace"], "project");
    assert!(m["entry"]["expires_at"].is_null());
    let created = m["entry"]["created_at"].as_u64().unwrap();
    let (st, _) = s
        .post(
            "/v1/memories",
            json!({"key": "project/cfg", "value": {"a": 1}, "ttlSeconds": 1}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .post("/v1/memory", json!({"key": "user/name", "value": "al"}))
        .await;
    assert_eq!(st, StatusCode::OK);

    let (st, g) = s.get("/v1/memory/project%2Flang").await;
    assert_eq!(st, StatusCode::OK, "{g}");
    assert_eq!(g["entry"]["value"], "rust");
    let (_, g) = s.get("/v1/memories/project%2Fcfg").await;
    assert_eq!(g["entry"]["value"], json!({"a": 1}));
    assert!(g["entry"]["expires_at"].as_u64().is_some());
    let (_, l) = s.get("/v1/memory?prefix=project/").await;
    assert_eq!(l["entries"].as_array().unwrap().len(), 2, "{l}");
    let (_, l) = s.get("/v1/memory").await;
    assert_eq!(l["entries"].as_array().unwrap().len(), 3);
    let (_, l) = s.get("/v1/memories?scope=user").await;
    assert_eq!(l["scope"], "user");
    assert_eq!(l["entries"][0]["key"], "user/name");
    let (st, _) = s.get("/v1/memories?scope=galaxy").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // Overwrite keeps created_at.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (_, m) = s
        .post(
            "/v1/memory",
            json!({"key": "project/lang", "value": "rust 2024"}),
        )
        .await;
    assert_eq!(m["entry"]["created_at"].as_u64().unwrap(), created);
    assert!(m["entry"]["updated_at"].as_u64().unwrap() > created);

    // Validation.
    for body in [
        json!({"key": "nonamespace", "value": 1}),
        json!({"key": "a b/c", "value": 1}),
        json!({"key": "p/x", "value": 1, "ttlSeconds": 0}),
        json!({"key": "p/x", "value": 1, "ttlSeconds": 2_592_001}),
        json!({"key": "p/x"}),
    ] {
        let (st, e) = s.post("/v1/memory", body.clone()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}: {e}");
    }
    let (st, e) = s
        .post(
            "/v1/memory",
            json!({"key": "p/big", "value": "x".repeat(110_000)}),
        )
        .await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{e}");

    // TTL: invisible at once after expiry, then reaped.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (st, _) = s.get("/v1/memory/project%2Fcfg").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, l) = s.get("/v1/memory?prefix=project/").await;
    assert_eq!(l["entries"].as_array().unwrap().len(), 1);
    assert_eq!(s.svc.reap_memory().await.unwrap(), 1);
    assert_eq!(s.svc.reap_memory().await.unwrap(), 0);

    // Delete.
    let (st, _) = s.delete("/v1/memories/user%2Fname").await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s.delete("/v1/memory/user%2Fname").await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // memoryKeys prepend values to the first prompt (missing keys skipped).
    let v = s
        .create(json!({"prompt": "hello", "memoryKeys": ["project/lang", "project/missing"]}))
        .await;
    let session = v["id"].as_str().unwrap().to_owned();
    s.wait_status(&session, "idle").await;
    assert_eq!(
        first_prompt(&s, &session).await,
        "[Memory context]\nproject/lang: rust 2024\n\nhello"
    );

    // Session memories.
    let (st, m) = s
        .post(
            &format!("/v1/sessions/{session}/memories"),
            json!({"key": "note", "value": 42}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{m}");
    assert_eq!(m["entry"]["key"], format!("session:{session}/note"));
    let (_, l) = s.get(&format!("/v1/sessions/{session}/memories")).await;
    assert_eq!(l["sessionId"], session.as_str());
    assert_eq!(l["entries"][0]["value"], 42);
    let (st, _) = s
        .get("/v1/sessions/00000000-0000-4000-8000-000000000000/memories")
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test]
async fn memory_disabled_and_full() {
    let s = TestServer::start_with(|c| c.memory_enabled = false).await;
    for (st, e) in [
        s.get("/v1/memory").await,
        s.get("/v1/memories?scope=project").await,
        s.post("/v1/memory", json!({"key": "a/b", "value": 1}))
            .await,
        s.get("/v1/memory/a%2Fb").await,
        s.delete("/v1/memory/a%2Fb").await,
    ] {
        assert_eq!(st, StatusCode::NOT_FOUND, "{e}");
        assert_eq!(e["code"], "FEATURE_DISABLED");
        assert!(
            e["message"].as_str().unwrap().contains("memoryBridge"),
            "{e}"
        );
    }
    s.stop().await;

    let s = TestServer::start_with(|c| c.memory_max_entries_per_tenant = 2).await;
    for k in ["a/1", "a/2"] {
        let (st, _) = s.post("/v1/memory", json!({"key": k, "value": 1})).await;
        assert_eq!(st, StatusCode::OK);
    }
    let (st, e) = s
        .post("/v1/memory", json!({"key": "a/3", "value": 1}))
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert_eq!(e["code"], "MEMORY_FULL");
    // Overwriting an existing key is fine when full.
    let (st, _) = s
        .post("/v1/memory", json!({"key": "a/2", "value": 2}))
        .await;
    assert_eq!(st, StatusCode::OK);
    s.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Batch
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn batch_reports_per_item_failures_and_is_rate_limited() {
    let s = TestServer::start().await;
    let (st, _) = s.post("/v1/sessions/batch", json!({"sessions": []})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let many: Vec<Value> = (0..51).map(|_| json!({"workDir": s.work})).collect();
    let (st, _) = s
        .post("/v1/sessions/batch", json!({"sessions": many}))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    let (st, b) = s
        .post(
            "/v1/sessions/batch",
            json!({"sessions": [
                {"workDir": s.work, "prompt": "one"},
                {"workDir": "/definitely/not/here", "prompt": "two"},
                {"workDir": s.work, "bogus": true},
                {"workDir": s.work, "prompt": "four"},
            ]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    assert_eq!(b["created"], 2);
    assert_eq!(b["failed"], 2);
    assert_eq!(b["failures"][0]["index"], 1);
    assert_eq!(b["failures"][0]["code"], "INVALID_WORKDIR");
    assert_eq!(b["failures"][1]["index"], 2);
    assert_eq!(b["failures"][1]["code"], "VALIDATION_ERROR");
    assert_eq!(b["errors"].as_array().unwrap().len(), 2);
    assert!(b["errors"][0].as_str().unwrap().starts_with("item 1:"));
    let ids: Vec<&str> = b["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1], "items default to reuse: false");
    assert_eq!(b["sessions"][0]["reused"], false);
    assert!(b["sessions"][0]["promptDelivery"]["promptId"].is_string());
    for i in &ids {
        s.wait_status(i, "idle").await;
    }

    // One batch per 5 s per principal.
    let resp = s
        .http
        .post(s.url("/v1/sessions/batch"))
        .json(&json!({"sessions": [{"workDir": s.work}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=5).contains(&retry), "{retry}");
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["code"], "RATE_LIMITED");
    s.stop().await;
}

#[tokio::test]
async fn batch_checks_capacity_for_every_item_first() {
    let s = TestServer::start_with(|c| c.max_sessions = 3).await;
    let items: Vec<Value> = (0..4).map(|_| json!({"workDir": s.work})).collect();
    let (st, e) = s
        .post("/v1/sessions/batch", json!({"sessions": items}))
        .await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{e}");
    assert_eq!(e["code"], "SESSION_LIMIT");
    let (_, l) = s.get("/v1/sessions").await;
    assert_eq!(l["pagination"]["total"], 0, "nothing created");
    let items: Vec<Value> = (0..3).map(|_| json!({"workDir": s.work})).collect();
    let (st, b) = s
        .post("/v1/sessions/batch", json!({"sessions": items}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    assert_eq!(b["created"], 3);
    s.stop().await;
}

// ---------------------------------------------------------------------------------------------
// kill -9 of the real server mid-pipeline
// ---------------------------------------------------------------------------------------------

struct Proc {
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) on our own child's pid; no memory is involved.
            #[allow(unsafe_code)]
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_ag(config: &std::path::Path, port: u16, log: &std::path::Path) -> Proc {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let child = Command::new(aegis_testkit::bins::ag())
        .args(["serve", "--config"])
        .arg(config)
        .env_remove("AEGIS_PORT")
        .env_remove("AEGIS_STATE_DIR")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("spawn ag serve");
    let proc = Proc { child };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/v1/health")).await {
            if r.status().is_success() {
                return proc;
            }
        }
        assert!(
            Instant::now() < deadline,
            "server did not come up: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get_json(base: &str, path: &str) -> Value {
    reqwest::get(format!("{base}{path}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn poll_pipeline(base: &str, id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = get_json(base, &format!("/v1/pipelines/{id}")).await;
        if pred(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "pipeline {id}: {what} not reached: {v:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn pipeline_survives_kill_dash_nine_and_completes_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = dir.path().join("config.yaml");
    std::fs::write(
        &cfg,
        format!(
            "port: {port}\nstateDir: \"{}\"\ndefaultAgent: scripted\nallowedWorkDirs: [\"{}\"]\nagents:\n  scripted:\n    command: \"{}\"\n    env: {{SCRIPTED_AGENT_STATE_DIR: \"{}\"}}\n",
            state.display(),
            work.display(),
            aegis_testkit::bins::scripted_agent().display(),
            state.join("scripted").display(),
        ),
    )
    .unwrap();
    let log = dir.path().join("server.log");
    let base = format!("http://127.0.0.1:{port}");

    let server = start_ag(&cfg, port, &log).await;
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/pipelines"))
        .json(&json!({"name": "durable", "workDir": work, "stages": [
            {"name": "long", "prompt": "slow:100"},
            {"name": "gated", "prompt": "gate {{stages.long.output}}", "dependsOn": ["long"], "gate": true},
            {"name": "final", "prompt": "summary of {{stages.long.output}}", "dependsOn": ["long"]},
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let p: Value = r.json().await.unwrap();
    let id = p["id"].as_str().unwrap().to_owned();
    let long_session = sid(&p, "long");
    // Let the turn stream a while, then kill -9 in the middle of it.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = get_json(&base, &format!("/v1/sessions/{long_session}")).await;
        if s["status"] == "working" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "stage never started working: {s}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut server = server;
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    drop(server);

    // Restart: the pipeline is still there and completes; the lost turn was queued again.
    let server = start_ag(&cfg, port, &log).await;
    let before = get_json(&base, &format!("/v1/pipelines/{id}")).await;
    assert_eq!(before["status"], "running", "{before:#}");
    let held = poll_pipeline(&base, &id, "gate reached", |v| {
        stage(v, "gated")["awaitingApproval"] == true && stage(v, "final")["status"] == "completed"
    })
    .await;
    let long = stage(&held, "long");
    assert_eq!(long["status"], "completed", "{held:#}");
    assert_eq!(
        long["attempts"], 2,
        "the lost turn was sent again once: {long}"
    );
    assert_eq!(
        long["sessionId"],
        long_session.as_str(),
        "same session, reattached"
    );
    assert!(
        long["output"].as_str().unwrap().contains("chunk 100/100"),
        "{long}"
    );
    // The approval gate survives the restart too.
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/pipelines/{id}/stages/gated/approve"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let done = poll_pipeline(&base, &id, "completed", |v| v["status"] != "running").await;
    assert_eq!(done["status"], "completed", "{done:#}");
    assert!(
        stage(&done, "final")["output"]
            .as_str()
            .unwrap()
            .starts_with("Scripted reply: summary of chunk 1/100"),
        "{done:#}"
    );
    // Kill every session so no agent outlives the test.
    let l = get_json(&base, "/v1/sessions?status=active&limit=100").await;
    for x in l["sessions"].as_array().cloned().unwrap_or_default() {
        let _ = reqwest::Client::new()
            .delete(format!("{base}/v1/sessions/{}", x["id"].as_str().unwrap()))
            .send()
            .await;
    }
    drop(server);
}
