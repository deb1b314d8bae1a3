//! How a backup's session starts: the master's decision on each HELLO, as a pure function of
//! what the HELLO claims and what the master did. This is the heart of partial resync, and the
//! place where a claim that does not fit what was sent is caught.

use crate::proto::handshake::Hello;

/// What the master knows when a HELLO arrives.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Facts {
    pub master_session: u64,
    /// The backup session served last (0: none).
    pub backup_session: u64,
    /// The end of the last completed full resync (None: none completed, or it was lost).
    pub resume_from: Option<u64>,
    /// The oldest sequence number still held.
    pub front_seq: u64,
    /// The last sequence number delivered to `backup_session`, over all its connections.
    pub session_delivered: u64,
    /// Either side runs without resync.
    pub no_resync: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Start {
    /// The backup session returns and the master holds everything after what it applied:
    /// resend from there.
    Resume,
    /// No resync: resend every unacknowledged TLV.
    Stream,
    /// A full resync from the database walk.
    Walk,
    /// The HELLO claims what cannot be: the connection is a protocol violation.
    Impossible(String),
}

pub(crate) fn decide(h: &Hello, f: &Facts) -> Start {
    let same_session = f.backup_session != 0 && h.session == f.backup_session && h.peer_session == f.master_session;
    if same_session {
        if h.seq > f.session_delivered {
            return Start::Impossible(format!(
                "claims to have applied sequence {}, but only up to {} was ever delivered to it",
                h.seq, f.session_delivered
            ));
        }
        let walk_done = f.resume_from.is_some_and(|r| h.seq >= r);
        let all_held = h.seq + 1 >= f.front_seq;
        if walk_done && all_held {
            return Start::Resume;
        }
    }
    if f.no_resync {
        Start::Stream
    } else {
        Start::Walk
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::handshake::{Role, HANDSHAKE_VERSION, PROTOCOL_VERSION};

    const M: u64 = 0xaaaa;
    const B: u64 = 0xbbbb;

    fn hello(session: u64, peer_session: u64, seq: u64) -> Hello {
        Hello {
            version: HANDSHAKE_VERSION,
            role: Role::Backup,
            flags: 0,
            keepalive_ms: 1000,
            max_version: PROTOCOL_VERSION,
            session,
            peer_session,
            seq,
        }
    }

    fn facts() -> Facts {
        // The backup finished a walk ending at 100, was sent up to 180, acknowledged up to 149.
        Facts {
            master_session: M,
            backup_session: B,
            resume_from: Some(100),
            front_seq: 150,
            session_delivered: 180,
            no_resync: false,
        }
    }

    #[test]
    fn the_table() {
        let f = facts();
        let walk = Start::Walk;
        let cases: Vec<(&str, Hello, Facts, Start)> = vec![
            ("returns having applied what it acknowledged", hello(B, M, 149), f, Start::Resume),
            ("returns having applied more than it acknowledged", hello(B, M, 170), f, Start::Resume),
            ("returns having applied all that was sent", hello(B, M, 180), f, Start::Resume),
            ("claims one beyond what was sent", hello(B, M, 181), f, Start::Impossible(String::new())),
            ("claims far beyond (a spoofed resume)", hello(B, M, u64::MAX), f, Start::Impossible(String::new())),
            ("needs entries already freed", hello(B, M, 120), f, walk.clone()),
            ("had not finished the walk", hello(B, M, 99), Facts { front_seq: 90, ..f }, walk.clone()),
            ("no walk completed", hello(B, M, 149), Facts { resume_from: None, ..f }, walk.clone()),
            ("a restarted backup (new session)", hello(0xcccc, 0, 0), f, walk.clone()),
            ("a backup of another master session", hello(B, 0x1234, 149), f, walk.clone()),
            ("a new backup claiming sequence numbers", hello(0xcccc, M, 10_000), f, walk.clone()),
            ("nobody served yet", hello(0, 0, 0), Facts { backup_session: 0, ..f }, walk.clone()),
            ("session 0 never matches", hello(0, M, 0), Facts { backup_session: 0, session_delivered: 0, ..f }, walk),
            ("fresh, no resync", hello(0xcccc, 0, 0), Facts { no_resync: true, ..f }, Start::Stream),
            ("resume wins over no resync", hello(B, M, 150), Facts { no_resync: true, ..f }, Start::Resume),
            (
                "impossible even with no resync",
                hello(B, M, 500),
                Facts { no_resync: true, ..f },
                Start::Impossible(String::new()),
            ),
        ];
        for (what, h, f, want) in cases {
            let got = decide(&h, &f);
            match (&got, &want) {
                (Start::Impossible(why), Start::Impossible(_)) => assert!(why.contains("delivered"), "{what}: {why}"),
                _ => assert_eq!(got, want, "{what}"),
            }
        }
    }
}
