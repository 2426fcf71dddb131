//! The client against a tiny scripted HTTP server on loopback: SSE resumption with
//! `Last-Event-ID` (no duplicates, no gaps), error envelopes, the health probe.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aegis_client::{Client, ClientError, StreamOptions};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// One scripted answer per connection, in order; records each request head.
async fn fake_server(answers: Vec<String>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let rec = heads.clone();
    tokio::spawn(async move {
        for answer in answers {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = sock.read(&mut chunk).await.unwrap();
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            rec.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&buf).into_owned());
            sock.write_all(answer.as_bytes()).await.unwrap();
            sock.shutdown().await.unwrap();
        }
    });
    (format!("http://{addr}"), heads)
}

fn sse_response(frames: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\nretry: 3000\n\n{frames}"
    )
}

fn frame(id: Option<u64>, event: &str) -> String {
    let id_line = id.map(|i| format!("id: {i}\n")).unwrap_or_default();
    let id_json = id.map(|i| format!("\"id\":{i},")).unwrap_or_default();
    format!(
        "{id_line}event: {event}\ndata: {{{id_json}\"event\":\"{event}\",\"sessionId\":\"s\",\"timestamp\":\"t\",\"emittedAt\":1,\"data\":{{}}}}\n\n"
    )
}

#[tokio::test]
async fn sse_resumes_with_last_event_id_without_duplicates() {
    let first = sse_response(&format!(
        "{}{}{}",
        frame(None, "connected"),
        frame(Some(1), "status"),
        frame(Some(2), "message")
    ));
    // The second connection replays id 2 again (a server may); the client drops it.
    let second = sse_response(&format!(
        "{}{}{}{}",
        frame(None, "connected"),
        frame(Some(2), "message"),
        frame(Some(3), "turn"),
        frame(Some(4), "ended")
    ));
    let (base, heads) = fake_server(vec![first, second]).await;
    let client = Client::new(&base, Some("tok".into())).unwrap();
    let opts = StreamOptions {
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(20),
        ..StreamOptions::after(0)
    };
    let mut stream = client.session_events("abc", opts);
    let mut seen = Vec::new();
    while let Some(ev) = stream.next().await.unwrap() {
        seen.push((ev.id, ev.event.clone()));
    }
    assert_eq!(
        seen,
        vec![
            (None, "connected".to_owned()),
            (Some(1), "status".to_owned()),
            (Some(2), "message".to_owned()),
            (None, "connected".to_owned()),
            (Some(3), "turn".to_owned()),
            (Some(4), "ended".to_owned()),
        ]
    );
    let heads = heads.lock().unwrap().clone();
    assert!(
        heads[0].starts_with("GET /v1/sessions/abc/events?after=0 "),
        "{}",
        heads[0]
    );
    assert!(
        heads[0]
            .to_lowercase()
            .contains("authorization: bearer tok"),
        "{}",
        heads[0]
    );
    assert!(
        heads[1].to_lowercase().contains("last-event-id: 2"),
        "{}",
        heads[1]
    );
    assert_eq!(stream.last_event_id(), Some(4));
}

#[tokio::test]
async fn sse_gives_up_after_the_retry_budget() {
    let first = sse_response(&frame(Some(1), "status"));
    let (base, _) = fake_server(vec![first]).await;
    let client = Client::new(&base, None).unwrap();
    let opts = StreamOptions {
        max_retries: 2,
        backoff_min: Duration::from_millis(5),
        backoff_max: Duration::from_millis(10),
        ..StreamOptions::after(0)
    };
    let mut stream = client.session_events("abc", opts);
    assert_eq!(stream.next().await.unwrap().unwrap().id, Some(1));
    let err = stream.next().await.unwrap_err();
    assert!(
        matches!(err, ClientError::StreamLost { attempts: 2, .. }),
        "{err:?}"
    );
    assert!(err.is_unreachable());
}

#[tokio::test]
async fn error_envelopes_are_kept() {
    let body = r#"{"code":"NO_PENDING_PERMISSION","message":"Nothing is pending","requestId":"req-1","error":"Nothing is pending","details":{"sessionId":"x"}}"#;
    let answer = format!(
        "HTTP/1.1 409 Conflict\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (base, _) = fake_server(vec![answer]).await;
    let client = Client::new(&base, None).unwrap();
    let err = client
        .approve("3f1c2b9e-5d4a-4c1e-9a7b-2e8f6d0c1a2b", &Default::default())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(409));
    assert_eq!(err.code(), Some("NO_PENDING_PERMISSION"));
    let b = err.body().unwrap();
    assert_eq!(b.request_id, "req-1");
    assert_eq!(b.details, Some(serde_json::json!({"sessionId": "x"})));
    assert!(err.to_string().contains("Nothing is pending"));
}

#[tokio::test]
async fn health_requires_the_api_version_header() {
    let plain = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".to_owned();
    let aegis = "HTTP/1.1 200 OK\r\nX-Aegis-API-Version: 1\r\nContent-Type: application/json\r\nContent-Length: 15\r\nConnection: close\r\n\r\n{\"status\":\"ok\"}".to_owned();
    let (base, _) = fake_server(vec![plain, aegis]).await;
    let client = Client::new(&base, None).unwrap();
    assert!(matches!(
        client.health().await,
        Err(ClientError::NotAegis { .. })
    ));
    assert_eq!(client.health().await.unwrap()["status"], "ok");
}

#[tokio::test]
async fn nothing_listening_is_unreachable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let client = Client::new(&format!("http://127.0.0.1:{port}"), None).unwrap();
    let err = client.health().await.unwrap_err();
    assert!(matches!(err, ClientError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains(&port.to_string()));
}

#[tokio::test]
async fn a_terminal_session_stream_ends_with_its_stored_ended_frame() {
    // Cursor past the `ended` event: the server sends it again and closes.
    let only = sse_response(&format!(
        "{}{}",
        frame(None, "connected"),
        frame(Some(7), "ended")
    ));
    let (base, _) = fake_server(vec![only]).await;
    let client = Client::new(&base, None).unwrap();
    let mut stream = client.session_events("abc", StreamOptions::after(7));
    assert_eq!(stream.next().await.unwrap().unwrap().event, "connected");
    let ended = stream.next().await.unwrap().unwrap();
    assert_eq!((ended.id, ended.event.as_str()), (Some(7), "ended"));
    assert!(stream.next().await.unwrap().is_none());
}
