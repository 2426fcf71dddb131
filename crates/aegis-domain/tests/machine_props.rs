//! Property tests of the state machine over random input sequences.

use std::collections::BTreeSet;

use aegis_domain::{
    DomainEvent, Input, PromptId, PromptSource, QuestionId, QueuedPrompt, RequestId, SessionState,
    SessionStatus, StopReason, TransitionError, transition,
};
use proptest::prelude::*;
use uuid::Uuid;

fn rid(n: u8) -> RequestId {
    RequestId::from_uuid(Uuid::from_u128(0x100 + u128::from(n)))
}
fn qid(n: u8) -> QuestionId {
    QuestionId::from_uuid(Uuid::from_u128(0x200 + u128::from(n)))
}

/// `Enqueue` carries a placeholder prompt; the test gives each one a unique id.
fn placeholder_prompt() -> QueuedPrompt {
    QueuedPrompt {
        prompt_id: PromptId::from_uuid(Uuid::nil()),
        text: "p".into(),
        source: PromptSource::Api,
        queued_at_ms: 0,
    }
}

fn stop_reason() -> impl Strategy<Value = StopReason> {
    prop_oneof![
        Just(StopReason::EndTurn),
        Just(StopReason::MaxTokens),
        Just(StopReason::MaxTurnRequests),
        Just(StopReason::Refusal),
        Just(StopReason::Cancelled),
    ]
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        6 => Just(Input::Enqueue(placeholder_prompt())),
        4 => Just(Input::Ready),
        5 => stop_reason().prop_map(|stop_reason| Input::TurnEnded { stop_reason }),
        3 => (any::<bool>(), proptest::option::of(0u64..100_000)).prop_map(|(rl, at)| {
            Input::TurnFailed {
                message: "failed".into(),
                rate_limit: rl.then_some(at),
            }
        }),
        4 => (0u8..3).prop_map(|n| Input::PermissionAsked(rid(n))),
        4 => (0u8..3).prop_map(|n| Input::PermissionResolved(rid(n))),
        2 => (0u8..2).prop_map(|n| Input::QuestionAsked(qid(n))),
        2 => (0u8..2).prop_map(|n| Input::QuestionResolved(qid(n))),
        2 => Just(Input::StallDetected),
        2 => Just(Input::AgentActivity),
        2 => Just(Input::RateLimitElapsed),
        2 => Just(Input::ResumeRequested),
        2 => Just(Input::Interrupt),
        1 => Just(Input::Cancel),
        2 => proptest::option::of(Just("why".to_string()))
            .prop_map(|reason| Input::Pause { reason }),
        2 => Just(Input::Unpause),
        1 => Just(Input::Kill { reason: "killed_by_api".into() }),
        1 => Just(Input::Close),
        1 => (proptest::option::of(-1i32..3), proptest::option::of(1i32..16))
            .prop_map(|(code, signal)| Input::AgentExited { code, signal }),
        1 => Just(Input::StartFailed { reason: "acp_timeout".into() }),
        1 => Just(Input::ProtocolViolation { detail: "bad line".into() }),
        2 => Just(Input::AgentLost { reason: "server_restart".into() }),
        3 => Just(Input::Reattached),
    ]
}

/// Prompt ids alive in a state (queued or in the running turn).
fn alive(st: &SessionState) -> Vec<PromptId> {
    st.queue
        .iter()
        .map(|p| p.prompt_id)
        .chain(st.turn.iter().map(|t| t.prompt.prompt_id))
        .collect()
}

fn check_step(
    before: &SessionState,
    input: &Input,
    result: &Result<(SessionState, Vec<DomainEvent>), TransitionError>,
    now: u64,
) -> Result<(), TestCaseError> {
    let (after, events) = match result {
        Err(e) => {
            // Errors are typed and consistent with the state they refer to.
            match e {
                TransitionError::SessionEnded { status } => {
                    prop_assert!(status.is_terminal() && *status == before.status)
                }
                TransitionError::AlreadyEnded { status } => {
                    prop_assert!(*status == before.status && status.is_terminal());
                    let is_kill = matches!(input, Input::Kill { .. });
                    prop_assert!(is_kill);
                }
                TransitionError::QueueFull { max } => {
                    prop_assert!(matches!(input, Input::Enqueue(_)));
                    prop_assert_eq!(*max, before.max_queued);
                    prop_assert!(before.queue.len() >= *max);
                }
                TransitionError::SessionBusy { status } => {
                    prop_assert!(matches!(input, Input::Close));
                    prop_assert!(*status != SessionStatus::Idle && status.is_live());
                }
                TransitionError::Illegal {
                    status,
                    input: name,
                } => {
                    prop_assert!(status.is_live());
                    prop_assert_eq!(*name, input.name());
                }
                TransitionError::NoPendingPermission | TransitionError::NoPendingQuestion => {
                    prop_assert!(before.status.is_live())
                }
            }
            return Ok(());
        }
        Ok(ok) => ok,
    };

    // Invariants of the resulting state.
    if let Err(broken) = after.check() {
        return Err(TestCaseError::fail(format!(
            "{broken}: {input:?} from {before:?} gave {after:?}"
        )));
    }

    // Terminal states stay terminal and do not change at all.
    if before.status.is_terminal() {
        prop_assert_eq!(after, before);
        prop_assert!(events.is_empty());
    }

    // Exactly one StatusChanged per status change, with matching from/to.
    let changes: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            DomainEvent::StatusChanged { from, to, .. } => Some((*from, *to)),
            _ => None,
        })
        .collect();
    if before.status == after.status {
        prop_assert!(changes.is_empty(), "{:?}", events);
    } else {
        prop_assert_eq!(changes, vec![(before.status, after.status)]);
        prop_assert_eq!(after.status_since_ms, now);
    }
    let ended = events
        .iter()
        .filter(|e| matches!(e, DomainEvent::Ended { .. }))
        .count();
    prop_assert_eq!(
        ended,
        usize::from(after.status.is_terminal() && before.status.is_live())
    );

    // A state change always emits at least one event.
    if after != before {
        prop_assert!(!events.is_empty(), "{:?} changed the state silently", input);
    }

    // Queue bound: enqueue never grows the queue past max_queued; only a rate-limit requeue
    // may take it one over.
    prop_assert!(after.queue.len() <= after.max_queued + 1);
    if matches!(input, Input::Enqueue(_)) && after.queue.len() > before.queue.len() {
        prop_assert!(after.queue.len() <= after.max_queued);
    }
    if after.queue.len() > after.max_queued {
        prop_assert!(
            after.status == SessionStatus::RateLimited || after.queue.len() <= before.queue.len()
        );
    }

    // One turn at a time: a turn only starts when none runs or the running one ended, and
    // every started turn is sent.
    let started: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            DomainEvent::TurnStarted { turn_id, prompt_id } => Some((*turn_id, *prompt_id)),
            _ => None,
        })
        .collect();
    prop_assert!(started.len() <= 1);
    if let Some((turn_id, prompt_id)) = started.first() {
        if let Some(old) = &before.turn {
            let old_ended = events.iter().any(
                |e| matches!(e, DomainEvent::TurnEnded { turn_id: t, .. } if *t == old.turn_id),
            );
            prop_assert!(old_ended, "a turn started while another ran");
        }
        let turn = after.turn.as_ref();
        prop_assert_eq!(turn.map(|t| t.turn_id), Some(*turn_id));
        prop_assert_eq!(turn.map(|t| t.prompt.prompt_id), Some(*prompt_id));
        let sent = events.iter().any(|e| matches!(
            e,
            DomainEvent::PromptSent { turn_id: t, prompt } if t == turn_id && prompt.prompt_id == *prompt_id
        ));
        prop_assert!(sent, "a started turn was not sent");
    }

    // Prompt conservation: every prompt is queued, running, ended or dropped — never lost or
    // duplicated.
    let after_alive = alive(after);
    let after_set: BTreeSet<_> = after_alive.iter().copied().collect();
    prop_assert_eq!(after_set.len(), after_alive.len(), "duplicate prompt");
    let mut expected: BTreeSet<_> = alive(before).into_iter().collect();
    if let Input::Enqueue(p) = input {
        expected.insert(p.prompt_id);
    }
    for e in events {
        match e {
            DomainEvent::PromptDropped { prompt_id } => {
                prop_assert!(expected.remove(prompt_id));
            }
            DomainEvent::TurnEnded { prompt_id, .. } => {
                let requeued = events.iter().any(
                    |r| matches!(r, DomainEvent::PromptRequeued { prompt_id: p } if p == prompt_id),
                );
                if !requeued {
                    prop_assert!(expected.remove(prompt_id));
                }
            }
            _ => {}
        }
    }
    prop_assert_eq!(after_set, expected);

    // Persisted form round-trips.
    let json = serde_json::to_string(after).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let back: SessionState =
        serde_json::from_str(&json).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, after);
    for e in events {
        let v = serde_json::to_value(e).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(v["type"].as_str(), Some(e.kind()));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn random_input_sequences_keep_the_invariants(
        max_queued in 0usize..4,
        steps in proptest::collection::vec((input(), 0u64..10_000), 1..80),
    ) {
        let mut st = SessionState::new(0, max_queued);
        let mut now = 0u64;
        for (i, (mut input, dt)) in steps.into_iter().enumerate() {
            if let Input::Enqueue(p) = &mut input {
                p.prompt_id = PromptId::from_uuid(Uuid::from_u128(i as u128 + 1));
                p.queued_at_ms = now;
            }
            now += dt;
            let result = transition(&st, input.clone(), now);
            check_step(&st, &input, &result, now)?;
            if let Ok((next, _)) = result {
                st = next;
            }
        }
    }

    #[test]
    fn errors_leave_no_trace_and_repeat(
        steps in proptest::collection::vec(input(), 1..40),
    ) {
        // A refused input is refused again with the same error (no hidden state).
        let mut st = SessionState::new(0, 2);
        for (i, mut input) in steps.into_iter().enumerate() {
            if let Input::Enqueue(p) = &mut input {
                p.prompt_id = PromptId::from_uuid(Uuid::from_u128(i as u128 + 1));
            }
            match transition(&st, input.clone(), i as u64) {
                Ok((next, _)) => st = next,
                Err(e) => prop_assert_eq!(transition(&st, input, i as u64).err(), Some(e)),
            }
        }
    }
}
