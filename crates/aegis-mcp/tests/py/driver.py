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
        args=["mcp", "--config", CONFIG, "--url", URL, "--no-embedded", *extra_args],
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
        if os.environ.get("UPDATE_SNAPSHOT") == "1" or not os.path.exists(path):
            with open(path, "w") as f:
                json.dump(snap, f, indent=2, ensure_ascii=False)
                f.write("\n")
            log(f"wrote {path}")
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


async def scenario_driver() -> None:
    """Driver claim by key A blocks send_message by key B until released."""
    master = os.environ.get("MASTER_TOKEN")
    workdir = os.environ["WORKDIR"]
    have_keys = route_exists("GET", "/v1/auth/keys", master)
    have_driver = route_exists("POST", "/v1/sessions/00000000-0000-4000-8000-000000000000/driver/claim", master)
    log(f"driver: auth keys route {'present' if have_keys else 'MISSING'}, driver routes {'present' if have_driver else 'MISSING'}")
    if not (have_keys and have_driver):
        # Degraded check against what exists: the tools say clearly that the feature is missing.
        async with connect(master) as s:
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
    keys = {}
    for who in ("A", "B"):
        status, body = rest("POST", "/v1/auth/keys", {"name": f"mcp-driver-{who}", "role": "operator"}, master)
        assert status == 201, (status, body)
        keys[who] = body["key"]
    async with connect(keys["A"]) as a, connect(keys["B"]) as b:
        # enforceSessionOwnership may be on: the session is created by A and shared by tenant
        created = await ok(a, "create_session", {"workDir": workdir, "name": "driver"})
        sid = created["id"]
        await wait_status(a, sid, {"idle"})
        claim = await ok(a, "acp_claim_driver", {"sessionId": sid, "ttlSeconds": 60})
        assert claim["actionType"] == "driver.claim", claim
        blocked = await err(b, "send_message", {"sessionId": sid, "text": "hello from B"})
        assert blocked["code"] in ("DRIVER_HELD", "SESSION_FORBIDDEN"), blocked
        if blocked["code"] == "SESSION_FORBIDDEN":
            raise AssertionError("key B may not act on A's session at all (ownership), so the driver rule cannot be observed: " + json.dumps(blocked))
        sent = await ok(a, "send_message", {"sessionId": sid, "text": "hello from A"})
        assert sent["ok"], sent
        released = await ok(a, "acp_release_driver", {"sessionId": sid})
        assert released["actionType"] == "driver.release", released
        sent = await ok(b, "send_message", {"sessionId": sid, "text": "hello from B"})
        assert sent["ok"], sent
        status, _ = rest("DELETE", f"/v1/sessions/{sid}", None, master)
        assert status == 200, status
    print("FULL: driver claim/release enforced across keys")


async def scenario_forbidden() -> None:
    """A viewer key: reads work, mutations fail with FORBIDDEN before any call."""
    master = os.environ.get("MASTER_TOKEN")
    if not route_exists("GET", "/v1/auth/keys", master) or not route_exists("GET", "/v1/auth/whoami", master):
        print("DEGRADED: needs /v1/auth/keys and /v1/auth/whoami")
        return
    status, body = rest("POST", "/v1/auth/keys", {"name": "mcp-viewer", "role": "viewer"}, master)
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


SCENARIOS = {
    "catalogue": scenario_catalogue,
    "flow": scenario_flow,
    "fuzz": scenario_fuzz,
    "driver": scenario_driver,
    "forbidden": scenario_forbidden,
}

if __name__ == "__main__":
    asyncio.run(SCENARIOS[sys.argv[1]]())
