//! One test (or more) per row of the transition table (api §2.3) and per queue rule (§2.4).

use super::*;
use SessionStatus::*;
use serde_json::json;
use uuid::Uuid;

const T0: u64 = 1_000;
const NOW: u64 = 5_000;

fn pid(n: u128) -> PromptId {
    PromptId::from_uuid(Uuid::from_u128(n))
}
fn rid(n: u128) -> RequestId {
    RequestId::from_uuid(Uuid::from_u128(0x100 + n))
}
fn qid(n: u128) -> QuestionId {
    QuestionId::from_uuid(Uuid::from_u128(0x200 + n))
}

fn prompt(n: u128) -> QueuedPrompt {
    QueuedPrompt {
        prompt_id: pid(n),
        text: format!("prompt {n}"),
        source: PromptSource::Api,
        queued_at_ms: T0,
    }
}

fn enqueue(n: u128) -> Input {
    Input::Enqueue(prompt(n))
}

/// Apply an input that must succeed; checks the invariants and the status bookkeeping.
fn step(st: &SessionState, input: Input) -> (SessionState, Vec<DomainEvent>) {
    let label = format!("{input:?} in {:?}", st.status);
    let (next, events) = transition(st, input, NOW).unwrap_or_else(|e| panic!("{label}: {e}"));
    next.check().unwrap_or_else(|e| panic!("{label}: {e}"));
    let changes = events
        .iter()
        .filter(|e| matches!(e, DomainEvent::StatusChanged { .. }))
        .count();
    assert_eq!(changes, usize::from(st.status != next.status), "{label}");
    if st.status != next.status {
        assert_eq!(next.status_since_ms, NOW, "{label}");
    }
    (next, events)
}

fn err(st: &SessionState, input: Input) -> TransitionError {
    transition(st, input, NOW).unwrap_err()
}

fn run(inputs: impl IntoIterator<Item = Input>) -> SessionState {
    inputs
        .into_iter()
        .fold(SessionState::new(T0, 3), |st, input| step(&st, input).0)
}

fn kinds(events: &[DomainEvent]) -> Vec<&'static str> {
    events.iter().map(DomainEvent::kind).collect()
}

fn status_change(events: &[DomainEvent]) -> Option<(SessionStatus, SessionStatus, Option<String>)> {
    events.iter().find_map(|e| match e {
        DomainEvent::StatusChanged {
            from, to, reason, ..
        } => Some((*from, *to, reason.clone())),
        _ => None,
    })
}

fn turn_prompt(st: &SessionState) -> Option<PromptId> {
    st.turn.as_ref().map(|t| t.prompt.prompt_id)
}

fn queue_ids(st: &SessionState) -> Vec<PromptId> {
    st.queue.iter().map(|p| p.prompt_id).collect()
}

fn pending() -> SessionState {
    SessionState::new(T0, 3)
}
fn idle() -> SessionState {
    run([Input::Ready])
}
fn working() -> SessionState {
    run([enqueue(1), Input::Ready])
}
fn stalled() -> SessionState {
    step(&working(), Input::StallDetected).0
}
fn permission_prompt() -> SessionState {
    step(&working(), Input::PermissionAsked(rid(1))).0
}
fn asking() -> SessionState {
    step(&working(), Input::QuestionAsked(qid(1))).0
}
fn rate_limited() -> SessionState {
    step(
        &working(),
        Input::TurnFailed {
            message: "429 rate limit".into(),
            rate_limit: Some(Some(60_000)),
        },
    )
    .0
}
fn interrupted() -> SessionState {
    step(
        &idle(),
        Input::AgentLost {
            reason: "server_restart".into(),
        },
    )
    .0
}
fn killed() -> SessionState {
    step(
        &idle(),
        Input::Kill {
            reason: "killed_by_api".into(),
        },
    )
    .0
}
fn completed() -> SessionState {
    step(&idle(), Input::Close).0
}
fn crashed() -> SessionState {
    step(
        &pending(),
        Input::StartFailed {
            reason: "spawn_failed".into(),
        },
    )
    .0
}

fn live_states() -> Vec<SessionState> {
    vec![
        pending(),
        idle(),
        working(),
        permission_prompt(),
        asking(),
        stalled(),
        rate_limited(),
        interrupted(),
    ]
}

fn terminal_states() -> Vec<SessionState> {
    vec![completed(), killed(), crashed()]
}

#[test]
fn fixtures_have_the_intended_statuses() {
    let live: Vec<_> = live_states().iter().map(|s| s.status).collect();
    assert_eq!(
        live,
        [
            Pending,
            Idle,
            Working,
            PermissionPrompt,
            Asking,
            Stalled,
            RateLimited,
            Interrupted
        ]
    );
    let ended: Vec<_> = terminal_states().iter().map(|s| s.status).collect();
    assert_eq!(ended, [Completed, Killed, Crashed]);
}

// ---- (none) → pending -------------------------------------------------------------------

#[test]
fn new_session_is_pending() {
    let st = SessionState::new(T0, 20);
    assert_eq!(st.status, Pending);
    assert_eq!(st.status_since_ms, T0);
    assert_eq!(st.max_queued, 20);
    assert!(!st.paused && st.queue.is_empty() && st.turn.is_none());
    st.check().unwrap();
}

// ---- pending → idle / working / crashed ------------------------------------------------

#[test]
fn pending_to_idle_when_ready_with_empty_queue() {
    let (st, ev) = step(&pending(), Input::Ready);
    assert_eq!(st.status, Idle);
    assert_eq!(kinds(&ev), ["statusChanged"]);
    assert_eq!(status_change(&ev), Some((Pending, Idle, None)));
}

#[test]
fn pending_to_working_when_ready_with_a_queued_prompt() {
    let (st, ev) = step(&pending(), enqueue(1));
    assert_eq!(st.status, Pending);
    assert_eq!(
        ev,
        [DomainEvent::PromptQueued {
            prompt_id: pid(1),
            position: 1
        }]
    );
    let (st, ev) = step(&st, Input::Ready);
    assert_eq!(st.status, Working);
    assert_eq!(kinds(&ev), ["statusChanged", "turnStarted", "promptSent"]);
    assert_eq!(turn_prompt(&st), Some(pid(1)));
    assert!(st.queue.is_empty());
    let turn = st.turn.as_ref().unwrap();
    assert_eq!(turn.started_at_ms, NOW);
    assert!(ev.contains(&DomainEvent::PromptSent {
        prompt: prompt(1),
        turn_id: turn.turn_id
    }));
    assert!(ev.contains(&DomainEvent::TurnStarted {
        turn_id: turn.turn_id,
        prompt_id: pid(1)
    }));
}

#[test]
fn pending_to_idle_when_ready_while_paused() {
    let st = run([
        enqueue(1),
        Input::Pause {
            reason: Some("wait".into()),
        },
    ]);
    let (st, _) = step(&st, Input::Ready);
    assert_eq!(st.status, Idle);
    assert_eq!(queue_ids(&st), [pid(1)]);
    let (st, ev) = step(&st, Input::Unpause);
    assert_eq!(st.status, Working);
    assert_eq!(
        kinds(&ev),
        ["resumed", "statusChanged", "turnStarted", "promptSent"]
    );
}

#[test]
fn pending_to_crashed_on_start_failure() {
    let st = run([enqueue(1)]);
    let (st, ev) = step(
        &st,
        Input::StartFailed {
            reason: "agent_auth_required".into(),
        },
    );
    assert_eq!(st.status, Crashed);
    assert_eq!(st.status_reason.as_deref(), Some("agent_auth_required"));
    assert_eq!(
        kinds(&ev),
        ["promptDropped", "statusChanged", "ended", "stopAgent"]
    );
    assert!(ev.contains(&DomainEvent::Ended {
        status: Crashed,
        reason: "agent_auth_required".into()
    }));
    assert!(st.queue.is_empty());
}

#[test]
fn pending_to_crashed_on_agent_exit_even_with_code_zero() {
    let (st, ev) = step(
        &pending(),
        Input::AgentExited {
            code: Some(0),
            signal: None,
        },
    );
    assert_eq!(st.status, Crashed);
    assert_eq!(
        status_change(&ev),
        Some((Pending, Crashed, Some("agent_exit".into())))
    );
}

#[test]
fn start_failed_is_illegal_after_start() {
    for st in [idle(), working(), interrupted()] {
        assert_eq!(
            err(&st, Input::StartFailed { reason: "x".into() }),
            TransitionError::Illegal {
                status: st.status,
                input: "start_failed"
            }
        );
    }
}

// ---- idle → working ----------------------------------------------------------------------

#[test]
fn idle_enqueue_starts_the_turn_at_once() {
    let (st, ev) = step(&idle(), enqueue(7));
    assert_eq!(st.status, Working);
    assert_eq!(kinds(&ev), ["statusChanged", "turnStarted", "promptSent"]);
    assert_eq!(turn_prompt(&st), Some(pid(7)));
    assert!(st.queue.is_empty());
}

#[test]
fn idle_paused_enqueue_queues_and_unpause_starts() {
    let st = run([Input::Ready, Input::Pause { reason: None }]);
    let (st, ev) = step(&st, enqueue(1));
    assert_eq!(st.status, Idle);
    assert_eq!(
        ev,
        [DomainEvent::PromptQueued {
            prompt_id: pid(1),
            position: 1
        }]
    );
    let (st, ev) = step(&st, enqueue(2));
    assert!(matches!(
        ev[0],
        DomainEvent::PromptQueued { position: 2, .. }
    ));
    let (st, _) = step(&st, Input::Unpause);
    assert_eq!(st.status, Working);
    assert_eq!(turn_prompt(&st), Some(pid(1)));
    assert_eq!(queue_ids(&st), [pid(2)]);
}

// ---- working/stalled → idle; working → working -------------------------------------------

#[test]
fn working_to_idle_when_the_turn_ends() {
    let st = working();
    let turn_id = st.turn.as_ref().unwrap().turn_id;
    let (st, ev) = step(
        &st,
        Input::TurnEnded {
            stop_reason: StopReason::EndTurn,
        },
    );
    assert_eq!(st.status, Idle);
    assert!(st.turn.is_none());
    assert_eq!(
        ev,
        [
            DomainEvent::TurnEnded {
                turn_id,
                prompt_id: pid(1),
                stop_reason: Some(StopReason::EndTurn),
                reason: None,
                error: None
            },
            DomainEvent::StatusChanged {
                from: Working,
                to: Idle,
                reason: None,
                detail: None
            }
        ]
    );
}

#[test]
fn stalled_to_idle_when_the_turn_ends() {
    let (st, ev) = step(
        &stalled(),
        Input::TurnEnded {
            stop_reason: StopReason::MaxTokens,
        },
    );
    assert_eq!(st.status, Idle);
    assert_eq!(kinds(&ev), ["turnEnded", "statusChanged"]);
}

#[test]
fn working_to_working_with_the_next_prompt_without_status_event() {
    let st = step(&working(), enqueue(2)).0;
    let (st, ev) = step(
        &st,
        Input::TurnEnded {
            stop_reason: StopReason::EndTurn,
        },
    );
    assert_eq!(st.status, Working);
    assert_eq!(kinds(&ev), ["turnEnded", "turnStarted", "promptSent"]);
    assert_eq!(turn_prompt(&st), Some(pid(2)));
}

#[test]
fn stalled_turn_end_with_queue_goes_to_working() {
    let st = step(&stalled(), enqueue(2)).0;
    let (st, ev) = step(
        &st,
        Input::TurnEnded {
            stop_reason: StopReason::EndTurn,
        },
    );
    assert_eq!(st.status, Working);
    assert_eq!(
        kinds(&ev),
        ["turnEnded", "statusChanged", "turnStarted", "promptSent"]
    );
}

#[test]
fn paused_queue_is_not_dequeued_when_the_turn_ends() {
    let st = run([
        enqueue(1),
        Input::Ready,
        enqueue(2),
        Input::Pause { reason: None },
    ]);
    let (st, _) = step(
        &st,
        Input::TurnEnded {
            stop_reason: StopReason::EndTurn,
        },
    );
    assert_eq!(st.status, Idle);
    assert_eq!(queue_ids(&st), [pid(2)]);
}

#[test]
fn turn_failure_without_rate_limit_ends_the_turn_with_error() {
    let (st, ev) = step(
        &working(),
        Input::TurnFailed {
            message: "Internal error".into(),
            rate_limit: None,
        },
    );
    assert_eq!(st.status, Idle);
    assert_eq!(st.status_reason.as_deref(), Some("turn_error"));
    assert!(matches!(
        &ev[0],
        DomainEvent::TurnEnded { stop_reason: None, error: Some(e), .. } if e == "Internal error"
    ));
}

#[test]
fn turn_end_without_a_turn_is_illegal() {
    for st in [pending(), idle(), rate_limited(), interrupted()] {
        assert_eq!(
            err(
                &st,
                Input::TurnEnded {
                    stop_reason: StopReason::EndTurn
                }
            ),
            TransitionError::Illegal {
                status: st.status,
                input: "turn_ended"
            }
        );
        assert!(matches!(
            err(
                &st,
                Input::TurnFailed {
                    message: "x".into(),
                    rate_limit: None
                }
            ),
            TransitionError::Illegal {
                input: "turn_failed",
                ..
            }
        ));
    }
}

// ---- permission_prompt -----------------------------------------------------------------

#[test]
fn working_and_stalled_to_permission_prompt() {
    for st in [working(), stalled()] {
        let from = st.status;
        let (st, ev) = step(&st, Input::PermissionAsked(rid(1)));
        assert_eq!(st.status, PermissionPrompt);
        assert_eq!(kinds(&ev), ["permissionPending", "statusChanged"]);
        assert_eq!(status_change(&ev), Some((from, PermissionPrompt, None)));
        assert_eq!(st.pending_permissions, [rid(1)]);
    }
}

#[test]
fn more_requests_stack_up_oldest_first() {
    let (st, ev) = step(&permission_prompt(), Input::PermissionAsked(rid(2)));
    assert_eq!(kinds(&ev), ["permissionPending"]);
    assert_eq!(st.pending_permissions, [rid(1), rid(2)]);
    assert_eq!(st.oldest_pending_permission(), Some(rid(1)));
    // A duplicate is ignored.
    let (again, ev) = step(&st, Input::PermissionAsked(rid(2)));
    assert!(ev.is_empty());
    assert_eq!(again, st);
}

#[test]
fn permission_prompt_to_working_when_the_last_request_is_answered() {
    let st = step(&permission_prompt(), Input::PermissionAsked(rid(2))).0;
    let (st, ev) = step(&st, Input::PermissionResolved(rid(2)));
    assert_eq!(st.status, PermissionPrompt);
    assert_eq!(ev, [DomainEvent::PermissionResolved { request_id: rid(2) }]);
    let (st, ev) = step(&st, Input::PermissionResolved(rid(1)));
    assert_eq!(st.status, Working);
    assert_eq!(kinds(&ev), ["permissionResolved", "statusChanged"]);
}

#[test]
fn resolving_an_unknown_request_is_no_pending_permission() {
    assert_eq!(
        err(&permission_prompt(), Input::PermissionResolved(rid(9))),
        TransitionError::NoPendingPermission
    );
    for st in [idle(), working(), asking()] {
        assert_eq!(
            err(&st, Input::PermissionResolved(rid(1))),
            TransitionError::NoPendingPermission
        );
    }
}

#[test]
fn permission_asked_outside_a_turn_is_illegal() {
    for st in [pending(), idle(), asking(), rate_limited(), interrupted()] {
        assert_eq!(
            err(&st, Input::PermissionAsked(rid(5))),
            TransitionError::Illegal {
                status: st.status,
                input: "permission_asked"
            }
        );
    }
}

// ---- asking ------------------------------------------------------------------------------

#[test]
fn working_and_stalled_to_asking_and_back_to_working() {
    for st in [working(), stalled()] {
        let (st, ev) = step(&st, Input::QuestionAsked(qid(1)));
        assert_eq!(st.status, Asking);
        assert_eq!(kinds(&ev), ["questionPending", "statusChanged"]);
        assert_eq!(
            err(&st, Input::QuestionResolved(qid(2))),
            TransitionError::NoPendingQuestion
        );
        let (st, ev) = step(&st, Input::QuestionResolved(qid(1)));
        assert_eq!(st.status, Working);
        assert_eq!(kinds(&ev), ["questionResolved", "statusChanged"]);
    }
}

#[test]
fn question_rules() {
    assert_eq!(
        err(&working(), Input::QuestionResolved(qid(1))),
        TransitionError::NoPendingQuestion
    );
    for st in [idle(), permission_prompt(), rate_limited()] {
        assert!(matches!(
            err(&st, Input::QuestionAsked(qid(3))),
            TransitionError::Illegal {
                input: "question_asked",
                ..
            }
        ));
    }
    // A second, different question while one is pending is illegal; the same one is a no-op.
    assert!(matches!(
        err(&asking(), Input::QuestionAsked(qid(2))),
        TransitionError::Illegal { .. }
    ));
    let st = asking();
    let (next, ev) = step(&st, Input::QuestionAsked(qid(1)));
    assert!(ev.is_empty() && next == st);
}

// ---- permission_prompt/asking → idle -------------------------------------------------------

#[test]
fn turn_end_while_waiting_cancels_pending_requests() {
    let st = step(&permission_prompt(), Input::PermissionAsked(rid(2))).0;
    let (st, ev) = step(
        &st,
        Input::TurnEnded {
            stop_reason: StopReason::Refusal,
        },
    );
    assert_eq!(st.status, Idle);
    assert!(st.pending_permissions.is_empty());
    assert_eq!(
        kinds(&ev),
        ["turnEnded", "permissionsCancelled", "statusChanged"]
    );
    assert!(ev.contains(&DomainEvent::PermissionsCancelled(vec![rid(1), rid(2)])));

    let (st, ev) = step(
        &asking(),
        Input::TurnFailed {
            message: "boom".into(),
            rate_limit: None,
        },
    );
    assert_eq!(st.status, Idle);
    assert!(st.pending_question.is_none());
    assert!(ev.contains(&DomainEvent::QuestionCancelled(qid(1))));
}

// ---- stalled -------------------------------------------------------------------------------

#[test]
fn working_to_stalled_and_back_on_activity() {
    let (st, ev) = step(&working(), Input::StallDetected);
    assert_eq!(st.status, Stalled);
    assert_eq!(st.status_reason.as_deref(), Some("no_updates"));
    assert_eq!(
        status_change(&ev),
        Some((Working, Stalled, Some("no_updates".into())))
    );
    let (st, ev) = step(&st, Input::AgentActivity);
    assert_eq!(st.status, Working);
    assert_eq!(st.status_reason, None);
    assert_eq!(kinds(&ev), ["statusChanged"]);
}

#[test]
fn stall_and_activity_elsewhere_change_nothing() {
    for st in live_states() {
        if st.status != Working {
            let (next, ev) = step(&st, Input::StallDetected);
            assert!(ev.is_empty() && next == st, "{:?}", st.status);
        }
        if st.status != Stalled {
            let (next, ev) = step(&st, Input::AgentActivity);
            assert!(ev.is_empty() && next == st, "{:?}", st.status);
        }
    }
}

// ---- rate_limited --------------------------------------------------------------------------

#[test]
fn working_and_stalled_to_rate_limited_requeue_the_prompt_at_the_head() {
    for base in [working(), stalled()] {
        let st = step(&base, enqueue(2)).0;
        let from = st.status;
        let (st, ev) = step(
            &st,
            Input::TurnFailed {
                message: "usage limit reached".into(),
                rate_limit: Some(Some(60_000)),
            },
        );
        assert_eq!(st.status, RateLimited);
        assert_eq!(st.status_reason.as_deref(), Some("rate_limit"));
        assert_eq!(st.resume_at_ms, Some(60_000));
        assert_eq!(st.rate_limit_attempts, 1);
        assert_eq!(queue_ids(&st), [pid(1), pid(2)]);
        assert_eq!(kinds(&ev), ["turnEnded", "promptRequeued", "statusChanged"]);
        assert!(matches!(
            &ev[0],
            DomainEvent::TurnEnded { reason: Some(r), error: Some(_), .. } if r == "rate_limited"
        ));
        assert_eq!(status_change(&ev).map(|c| c.0), Some(from));
    }
}

#[test]
fn rate_limit_without_known_resume_time() {
    let (st, _) = step(
        &working(),
        Input::TurnFailed {
            message: "429".into(),
            rate_limit: Some(None),
        },
    );
    assert_eq!(st.status, RateLimited);
    assert_eq!(st.resume_at_ms, None);
}

#[test]
fn rate_limited_to_working_when_resume_time_elapses() {
    let st = rate_limited();
    let (st, ev) = step(&st, Input::RateLimitElapsed);
    assert_eq!(st.status, Working);
    assert_eq!(st.resume_at_ms, None);
    assert_eq!(st.rate_limit_attempts, 1, "automatic retries keep counting");
    assert_eq!(turn_prompt(&st), Some(pid(1)));
    assert_eq!(kinds(&ev), ["statusChanged", "turnStarted", "promptSent"]);
    // A second rate limit counts up.
    let (st, _) = step(
        &st,
        Input::TurnFailed {
            message: "429".into(),
            rate_limit: Some(Some(90_000)),
        },
    );
    assert_eq!(st.rate_limit_attempts, 2);
    // A normal end resets the counter.
    let (st, _) = step(&st, Input::RateLimitElapsed);
    let (st, _) = step(
        &st,
        Input::TurnEnded {
            stop_reason: StopReason::EndTurn,
        },
    );
    assert_eq!(st.rate_limit_attempts, 0);
}

#[test]
fn rate_limit_elapsed_is_ignored_while_paused_or_elsewhere() {
    let st = step(&rate_limited(), Input::Pause { reason: None }).0;
    let (next, ev) = step(&st, Input::RateLimitElapsed);
    assert!(ev.is_empty() && next == st);
    for st in live_states() {
        if st.status != RateLimited {
            let (next, ev) = step(&st, Input::RateLimitElapsed);
            assert!(ev.is_empty() && next == st);
        }
    }
}

#[test]
fn rate_limited_to_working_on_resume_resets_attempts() {
    let (st, ev) = step(&rate_limited(), Input::ResumeRequested);
    assert_eq!(st.status, Working);
    assert_eq!(st.rate_limit_attempts, 0);
    assert_eq!(kinds(&ev), ["statusChanged", "turnStarted", "promptSent"]);
}

#[test]
fn resume_on_a_paused_rate_limited_session_only_unpauses() {
    let st = step(&rate_limited(), Input::Pause { reason: None }).0;
    let (st, ev) = step(&st, Input::ResumeRequested);
    assert_eq!(kinds(&ev), ["resumed"]);
    assert_eq!(st.status, RateLimited);
    assert!(!st.paused);
}

#[test]
fn rate_limited_to_idle_on_cancel_dropping_the_queue() {
    let st = step(&rate_limited(), enqueue(2)).0;
    let (st, ev) = step(&st, Input::Cancel);
    assert_eq!(st.status, Idle);
    assert!(st.queue.is_empty());
    assert_eq!(st.resume_at_ms, None);
    assert_eq!(st.rate_limit_attempts, 0);
    assert_eq!(
        ev,
        [
            DomainEvent::PromptDropped { prompt_id: pid(1) },
            DomainEvent::PromptDropped { prompt_id: pid(2) },
            DomainEvent::StatusChanged {
                from: RateLimited,
                to: Idle,
                reason: Some("cancelled".into()),
                detail: None
            }
        ]
    );
}

// ---- any live → interrupted; interrupted → idle/working --------------------------------------

#[test]
fn any_live_to_interrupted_when_the_agent_is_lost() {
    for st in live_states() {
        let from = st.status;
        let lost = Input::AgentLost {
            reason: "server_restart".into(),
        };
        if from == Interrupted {
            let (next, ev) = step(&st, lost);
            assert!(ev.is_empty() && next == st);
            continue;
        }
        let had_turn = st.turn.clone();
        let queue = queue_ids(&st);
        let (next, ev) = step(&st, lost);
        assert_eq!(next.status, Interrupted, "{from:?}");
        assert_eq!(next.status_reason.as_deref(), Some("server_restart"));
        assert!(next.turn.is_none());
        assert_eq!(queue_ids(&next), queue, "queued prompts survive; {from:?}");
        if let Some(turn) = had_turn {
            assert!(ev.contains(&DomainEvent::TurnEnded {
                turn_id: turn.turn_id,
                prompt_id: turn.prompt.prompt_id,
                stop_reason: None,
                reason: Some("interrupted".into()),
                error: None
            }));
        }
        if from == PermissionPrompt {
            assert!(ev.contains(&DomainEvent::PermissionsExpired(vec![rid(1)])));
        }
        if from == Asking {
            assert!(ev.contains(&DomainEvent::QuestionExpired(qid(1))));
        }
        assert_eq!(next.resume_at_ms, None);
    }
}

#[test]
fn interrupted_to_idle_or_working_on_reattach() {
    let (st, ev) = step(&interrupted(), Input::Reattached);
    assert_eq!(st.status, Idle);
    assert_eq!(kinds(&ev), ["statusChanged"]);

    // A rate-limited prompt survives the interruption and is sent after reattach.
    let st = step(
        &rate_limited(),
        Input::AgentLost {
            reason: "server_restart".into(),
        },
    )
    .0;
    let (st, ev) = step(&st, Input::Reattached);
    assert_eq!(st.status, Working);
    assert_eq!(turn_prompt(&st), Some(pid(1)));
    assert_eq!(kinds(&ev), ["statusChanged", "turnStarted", "promptSent"]);

    // The interrupted turn's own prompt is not re-sent.
    let st = step(
        &working(),
        Input::AgentLost {
            reason: "server_restart".into(),
        },
    )
    .0;
    assert!(st.queue.is_empty());
    assert_eq!(step(&st, Input::Reattached).0.status, Idle);

    let st = step(&interrupted(), enqueue(3)).0;
    let st = step(&st, Input::Pause { reason: None }).0;
    assert_eq!(step(&st, Input::Reattached).0.status, Idle);
}

#[test]
fn reattached_outside_interrupted_is_illegal() {
    for st in [pending(), idle(), working()] {
        assert!(matches!(
            err(&st, Input::Reattached),
            TransitionError::Illegal {
                input: "reattached",
                ..
            }
        ));
    }
}

#[test]
fn resume_on_interrupted_requests_a_reattach() {
    let st = interrupted();
    let (next, ev) = step(&st, Input::ResumeRequested);
    assert_eq!(ev, [DomainEvent::Reattach]);
    assert_eq!(next, st);
}

#[test]
fn interrupted_ignores_agent_exit_and_protocol_errors() {
    let st = interrupted();
    for input in [
        Input::AgentExited {
            code: Some(1),
            signal: None,
        },
        Input::ProtocolViolation { detail: "x".into() },
    ] {
        let (next, ev) = step(&st, input);
        assert!(ev.is_empty() && next == st);
    }
}

// ---- any live → killed --------------------------------------------------------------------

#[test]
fn any_live_to_killed() {
    for st in live_states() {
        let from = st.status;
        let st = step(&st, enqueue(9)).0;
        let (next, ev) = step(
            &st,
            Input::Kill {
                reason: "killed_by_api".into(),
            },
        );
        assert_eq!(next.status, Killed, "{from:?}");
        assert_eq!(next.status_reason.as_deref(), Some("killed_by_api"));
        assert!(next.queue.is_empty() && next.turn.is_none());
        let k = kinds(&ev);
        assert_eq!(
            k[k.len() - 3..],
            ["statusChanged", "ended", "stopAgent"],
            "{from:?}"
        );
        // Prompt 9 was queued (or, on idle, started at once and is the killed turn).
        if from == Idle {
            assert_eq!(turn_prompt(&st), Some(pid(9)));
        } else {
            assert!(ev.contains(&DomainEvent::PromptDropped { prompt_id: pid(9) }));
        }
        if let Some(turn) = &st.turn {
            assert_eq!(
                ev[0],
                DomainEvent::CancelTurn {
                    turn_id: turn.turn_id
                }
            );
            assert!(matches!(
                &ev[1],
                DomainEvent::TurnEnded { reason: Some(r), .. } if r == "killed"
            ));
        }
        if from == PermissionPrompt {
            assert!(ev.contains(&DomainEvent::PermissionsCancelled(vec![rid(1)])));
        }
        if from == Asking {
            assert!(ev.contains(&DomainEvent::QuestionCancelled(qid(1))));
        }
    }
}

#[test]
fn killing_a_terminal_session_reports_its_final_status() {
    for st in terminal_states() {
        assert_eq!(
            err(
                &st,
                Input::Kill {
                    reason: "killed_by_api".into()
                }
            ),
            TransitionError::AlreadyEnded { status: st.status }
        );
    }
}

// ---- idle → completed -------------------------------------------------------------------

#[test]
fn idle_to_completed_on_close() {
    let (st, ev) = step(&idle(), Input::Close);
    assert_eq!(st.status, Completed);
    assert_eq!(kinds(&ev), ["statusChanged", "ended", "stopAgent"]);
    assert!(ev.contains(&DomainEvent::Ended {
        status: Completed,
        reason: "closed".into()
    }));
}

#[test]
fn close_requires_idle() {
    for st in live_states() {
        if st.status != Idle {
            assert_eq!(
                err(&st, Input::Close),
                TransitionError::SessionBusy { status: st.status }
            );
        }
    }
    for st in terminal_states() {
        assert_eq!(
            err(&st, Input::Close),
            TransitionError::SessionEnded { status: st.status }
        );
    }
}

#[test]
fn paused_idle_with_queue_can_be_closed() {
    let st = run([Input::Ready, Input::Pause { reason: None }, enqueue(1)]);
    let (st, ev) = step(&st, Input::Close);
    assert_eq!(st.status, Completed);
    assert_eq!(ev[0], DomainEvent::PromptDropped { prompt_id: pid(1) });
}

#[test]
fn agent_exit_with_code_zero_while_idle_completes() {
    let (st, ev) = step(
        &idle(),
        Input::AgentExited {
            code: Some(0),
            signal: None,
        },
    );
    assert_eq!(st.status, Completed);
    assert_eq!(st.status_reason.as_deref(), Some("agent_exit"));
    assert_eq!(kinds(&ev), ["statusChanged", "ended"]);
}

// ---- any live except interrupted → crashed ----------------------------------------------

#[test]
fn other_agent_exits_crash() {
    let cases = [
        (idle(), Some(1), None),
        (idle(), None, Some(9)),
        (idle(), Some(0), Some(15)),
        (working(), Some(0), None),
        (permission_prompt(), Some(1), None),
        (rate_limited(), None, None),
        (asking(), Some(2), None),
        (stalled(), None, Some(9)),
    ];
    for (st, code, signal) in cases {
        let from = st.status;
        let (next, ev) = step(&st, Input::AgentExited { code, signal });
        assert_eq!(next.status, Crashed, "{from:?} {code:?} {signal:?}");
        assert_eq!(next.status_reason.as_deref(), Some("agent_exit"));
        assert!(!ev.contains(&DomainEvent::StopAgent));
        if from == PermissionPrompt {
            assert!(ev.contains(&DomainEvent::PermissionsExpired(vec![rid(1)])));
        }
        if from == Asking {
            assert!(ev.contains(&DomainEvent::QuestionExpired(qid(1))));
        }
    }
    let (_, ev) = step(
        &working(),
        Input::AgentExited {
            code: None,
            signal: Some(9),
        },
    );
    assert!(ev.iter().any(|e| matches!(
        e,
        DomainEvent::StatusChanged { detail: Some(d), .. } if d == "killed by signal 9"
    )));
}

#[test]
fn protocol_violation_crashes_any_live_but_interrupted() {
    for st in live_states() {
        if st.status == Interrupted {
            continue;
        }
        let (next, ev) = step(
            &st,
            Input::ProtocolViolation {
                detail: "stdout line is not JSON-RPC".into(),
            },
        );
        assert_eq!(next.status, Crashed);
        assert_eq!(next.status_reason.as_deref(), Some("protocol_error"));
        assert!(ev.contains(&DomainEvent::StatusChanged {
            from: st.status,
            to: Crashed,
            reason: Some("protocol_error".into()),
            detail: Some("stdout line is not JSON-RPC".into())
        }));
        assert_eq!(ev.last(), Some(&DomainEvent::StopAgent));
    }
}

// ---- terminal states ------------------------------------------------------------------------

#[test]
fn terminal_states_never_change() {
    let ids = [
        Input::Ready,
        enqueue(5),
        Input::TurnEnded {
            stop_reason: StopReason::EndTurn,
        },
        Input::TurnFailed {
            message: "x".into(),
            rate_limit: Some(None),
        },
        Input::PermissionAsked(rid(1)),
        Input::PermissionResolved(rid(1)),
        Input::QuestionAsked(qid(1)),
        Input::QuestionResolved(qid(1)),
        Input::StallDetected,
        Input::AgentActivity,
        Input::RateLimitElapsed,
        Input::ResumeRequested,
        Input::Interrupt,
        Input::Cancel,
        Input::Pause { reason: None },
        Input::Unpause,
        Input::Kill {
            reason: "again".into(),
        },
        Input::Close,
        Input::AgentExited {
            code: Some(0),
            signal: None,
        },
        Input::StartFailed { reason: "x".into() },
        Input::ProtocolViolation { detail: "x".into() },
        Input::AgentLost { reason: "x".into() },
        Input::Reattached,
    ];
    for st in terminal_states() {
        for input in ids.clone() {
            let name = input.name();
            match transition(&st, input, NOW) {
                Ok((next, ev)) => {
                    assert_eq!(next, st, "{name}");
                    assert!(ev.is_empty(), "{name}");
                }
                Err(e) => assert!(
                    matches!(
                        e,
                        TransitionError::SessionEnded { status }
                            | TransitionError::AlreadyEnded { status } if status == st.status
                    ),
                    "{name}: {e}"
                ),
            }
        }
    }
}

#[test]
fn sending_to_a_terminal_session_is_session_ended() {
    for st in terminal_states() {
        let e = err(&st, enqueue(1));
        assert_eq!(e, TransitionError::SessionEnded { status: st.status });
        assert_eq!(e.code(), "SESSION_ENDED");
        assert_eq!(
            err(&st, Input::Pause { reason: None }),
            TransitionError::SessionEnded { status: st.status }
        );
        assert_eq!(
            err(&st, Input::Cancel),
            TransitionError::SessionEnded { status: st.status }
        );
    }
}

// ---- queue rules (§2.4) -----------------------------------------------------------------------

#[test]
fn prompts_are_accepted_in_every_live_status() {
    for st in live_states() {
        let from = st.status;
        let (next, ev) = step(&st, enqueue(42));
        if from == Idle {
            assert_eq!(next.status, Working);
            assert_eq!(turn_prompt(&next), Some(pid(42)));
        } else {
            assert_eq!(next.status, from);
            assert_eq!(next.queue.back().map(|p| p.prompt_id), Some(pid(42)));
            assert!(matches!(ev[..], [DomainEvent::PromptQueued { .. }]));
        }
    }
}

#[test]
fn queue_full_is_refused() {
    let st = run([enqueue(1), Input::Ready, enqueue(2), enqueue(3), enqueue(4)]);
    assert_eq!(st.queue.len(), 3);
    let e = err(&st, enqueue(5));
    assert_eq!(e, TransitionError::QueueFull { max: 3 });
    assert_eq!(e.code(), "QUEUE_FULL");

    let st = run([
        Input::Pause { reason: None },
        enqueue(1),
        enqueue(2),
        enqueue(3),
    ]);
    assert_eq!(err(&st, enqueue(4)), TransitionError::QueueFull { max: 3 });
}

#[test]
fn rate_limit_requeue_into_a_full_queue_keeps_every_prompt() {
    let st = run([enqueue(1), Input::Ready, enqueue(2), enqueue(3), enqueue(4)]);
    let (st, _) = step(
        &st,
        Input::TurnFailed {
            message: "429".into(),
            rate_limit: Some(None),
        },
    );
    assert_eq!(queue_ids(&st), [pid(1), pid(2), pid(3), pid(4)]);
    assert_eq!(err(&st, enqueue(5)), TransitionError::QueueFull { max: 3 });
}

#[test]
fn interrupt_cancels_only_the_running_turn() {
    let st = step(&working(), enqueue(2)).0;
    let turn_id = st.turn.as_ref().unwrap().turn_id;
    let (st, ev) = step(&st, Input::Interrupt);
    assert_eq!(ev, [DomainEvent::CancelTurn { turn_id }]);
    assert_eq!(st.status, Working);
    assert_eq!(queue_ids(&st), [pid(2)]);
    // The turn then ends cancelled and the queue proceeds.
    let (st, ev) = step(
        &st,
        Input::TurnEnded {
            stop_reason: StopReason::Cancelled,
        },
    );
    assert_eq!(turn_prompt(&st), Some(pid(2)));
    assert_eq!(kinds(&ev), ["turnEnded", "turnStarted", "promptSent"]);
}

#[test]
fn interrupt_while_waiting_answers_pending_requests() {
    let (st, ev) = step(&permission_prompt(), Input::Interrupt);
    assert_eq!(st.status, Working);
    assert_eq!(
        kinds(&ev),
        ["cancelTurn", "permissionsCancelled", "statusChanged"]
    );
    let (st, ev) = step(&asking(), Input::Interrupt);
    assert_eq!(st.status, Working);
    assert_eq!(
        kinds(&ev),
        ["cancelTurn", "questionCancelled", "statusChanged"]
    );
    let (st, ev) = step(&stalled(), Input::Interrupt);
    assert_eq!(st.status, Stalled);
    assert_eq!(kinds(&ev), ["cancelTurn"]);
}

#[test]
fn interrupt_without_a_turn_does_nothing() {
    for st in [pending(), idle(), rate_limited(), interrupted()] {
        let (next, ev) = step(&st, Input::Interrupt);
        assert!(ev.is_empty() && next == st);
    }
}

#[test]
fn cancel_drops_the_queue_and_cancels_the_turn() {
    let st = run([enqueue(1), Input::Ready, enqueue(2), enqueue(3)]);
    let turn_id = st.turn.as_ref().unwrap().turn_id;
    let (st, ev) = step(&st, Input::Cancel);
    assert_eq!(
        ev,
        [
            DomainEvent::PromptDropped { prompt_id: pid(2) },
            DomainEvent::PromptDropped { prompt_id: pid(3) },
            DomainEvent::CancelTurn { turn_id },
        ]
    );
    assert_eq!(st.status, Working);
    assert!(st.queue.is_empty());
    let (st, _) = step(
        &st,
        Input::TurnEnded {
            stop_reason: StopReason::Cancelled,
        },
    );
    assert_eq!(st.status, Idle);

    // Pending session: the queue is dropped, the status stays.
    let st = run([enqueue(1)]);
    let (st, ev) = step(&st, Input::Cancel);
    assert_eq!(st.status, Pending);
    assert_eq!(kinds(&ev), ["promptDropped"]);
    let (_, ev) = step(&idle(), Input::Cancel);
    assert!(ev.is_empty());
}

#[test]
fn pause_and_unpause_are_idempotent_flags() {
    let (st, ev) = step(
        &working(),
        Input::Pause {
            reason: Some("review".into()),
        },
    );
    assert!(st.paused);
    assert_eq!(st.status, Working, "the running turn continues");
    assert_eq!(
        ev,
        [DomainEvent::Paused {
            reason: Some("review".into())
        }]
    );
    let (again, ev) = step(&st, Input::Pause { reason: None });
    assert!(ev.is_empty() && again == st);
    // Permission requests still surface while paused.
    assert_eq!(
        step(&st, Input::PermissionAsked(rid(1))).0.status,
        PermissionPrompt
    );
    let (st, ev) = step(&st, Input::Unpause);
    assert!(!st.paused);
    assert_eq!(ev, [DomainEvent::Resumed]);
    let (again, ev) = step(&st, Input::Unpause);
    assert!(ev.is_empty() && again == st);
}

#[test]
fn resume_requested_unpauses_a_paused_session() {
    let st = run([Input::Ready, Input::Pause { reason: None }, enqueue(1)]);
    let (st, ev) = step(&st, Input::ResumeRequested);
    assert!(!st.paused);
    assert_eq!(st.status, Working);
    assert_eq!(ev[0], DomainEvent::Resumed);
    // Nothing to resume.
    let (next, ev) = step(&idle(), Input::ResumeRequested);
    assert!(ev.is_empty() && next == idle());
}

#[test]
fn ready_twice_is_illegal() {
    assert_eq!(
        err(&idle(), Input::Ready),
        TransitionError::Illegal {
            status: Idle,
            input: "ready"
        }
    );
}

// ---- serde ------------------------------------------------------------------------------------

#[test]
fn state_round_trips_through_json() {
    for st in live_states().into_iter().chain(terminal_states()) {
        let json = serde_json::to_string(&st).unwrap();
        let back: SessionState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, st);
    }
    let v = serde_json::to_value(rate_limited()).unwrap();
    assert_eq!(v["status"], "rate_limited");
    assert_eq!(v["resumeAt"], 60_000);
    assert_eq!(v["statusSince"], NOW);
    assert_eq!(v["rateLimitAttempts"], 1);
    assert_eq!(v["maxQueued"], 3);
    assert_eq!(v["queue"][0]["source"], "api");
    assert_eq!(v["queue"][0]["queuedAt"], T0);
    assert_eq!(v["pendingPermissions"], json!([]));
}

#[test]
fn events_serialize_as_tagged_camel_case() {
    let ev = DomainEvent::StatusChanged {
        from: Idle,
        to: Working,
        reason: None,
        detail: None,
    };
    assert_eq!(
        serde_json::to_value(&ev).unwrap(),
        json!({"type": "statusChanged", "data": {"from": "idle", "to": "working", "reason": null, "detail": null}})
    );
    let ev = DomainEvent::PromptQueued {
        prompt_id: pid(1),
        position: 2,
    };
    assert_eq!(
        serde_json::to_value(&ev).unwrap(),
        json!({"type": "promptQueued", "data": {"promptId": pid(1).to_string(), "position": 2}})
    );
    let ev = DomainEvent::PermissionsCancelled(vec![rid(1)]);
    assert_eq!(
        serde_json::to_value(&ev).unwrap(),
        json!({"type": "permissionsCancelled", "data": [rid(1).to_string()]})
    );
    assert_eq!(
        serde_json::to_value(DomainEvent::StopAgent).unwrap(),
        json!({"type": "stopAgent"})
    );
    // kind() matches the serde tag for every event a real run produces.
    let mut all = Vec::new();
    for st in live_states() {
        for input in [
            Input::Kill { reason: "k".into() },
            Input::Interrupt,
            Input::ResumeRequested,
            Input::AgentLost { reason: "x".into() },
        ] {
            if let Ok((_, ev)) = transition(&st, input, NOW) {
                all.extend(ev);
            }
        }
    }
    all.push(DomainEvent::Paused { reason: None });
    for ev in all {
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["type"], ev.kind());
        let back: DomainEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, ev);
    }
}

#[test]
fn error_codes() {
    assert_eq!(
        TransitionError::NoPendingPermission.code(),
        "NO_PENDING_PERMISSION"
    );
    assert_eq!(
        TransitionError::NoPendingQuestion.code(),
        "NO_PENDING_QUESTION"
    );
    assert_eq!(
        TransitionError::SessionBusy { status: Working }.code(),
        "SESSION_BUSY"
    );
    assert_eq!(
        TransitionError::Illegal {
            status: Idle,
            input: "ready"
        }
        .to_string(),
        "input ready is not allowed in status idle"
    );
}
