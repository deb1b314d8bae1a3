//! The backup's side of a connection's start: connect, the key exchange when keyed, HELLO,
//! and the master's WELCOME (or REFUSE) that decides where the stream resumes.

use super::*;

impl Backup {
    pub(super) fn connect<A: App>(&mut self, app: &mut AppPath<A>, reg: &Registry, now: Instant) {
        let addr = self.cfg.sock_addr(self.host_at);
        let r = TcpStream::connect(addr)
            .and_then(|s| Conn::new(s, tokens::CONN, reg, (READ_CAP, MAX_BATCH_LEN), self.cfg.keepalive));
        match r {
            Ok(mut c) => {
                // Readiness means nothing until the connect completes.
                c.readable = false;
                c.writable = false;
                self.state = State::Connecting(c);
            }
            Err(e) => {
                if let Some(n) = self.outage.note("connect", now) {
                    app.log(&format!("junos-sync backup: cannot connect to {}: {e}{}", addr::show(addr), more(n)));
                }
                self.host_at = (self.host_at + 1) % self.cfg.hosts.len();
                self.retry_later();
            }
        }
    }

    /// The connection is up: prove the key first if we hold one, else say HELLO.
    pub(super) fn introduce<A: App>(&mut self, app: &AppPath<A>) -> Result<(), Fault> {
        let State::Connecting(mut c) = std::mem::replace(&mut self.state, State::Dormant) else {
            unreachable!("called in Connecting")
        };
        if self.keys.is_empty() {
            self.send_hello(&mut c, app.applied());
            self.state = State::Handshake(c);
        } else {
            let (init, msg) = Initiator::start(&self.keys.psks()[self.key_at]);
            c.out.control(FrameKind::KeyInit, 0, &msg);
            self.state = State::KeyExchange(c, Box::new(init));
        }
        Ok(())
    }

    pub(super) fn send_hello(&self, c: &mut Conn, applied: u64) {
        let hello = Hello {
            version: HANDSHAKE_VERSION,
            role: Role::Backup,
            flags: if self.cfg.no_resync { FLAG_NO_RESYNC } else { 0 },
            keepalive_ms: keepalive_ms(self.cfg.keepalive),
            max_version: self.cfg.max_version,
            session: self.session,
            peer_session: self.master_session,
            seq: applied,
        };
        c.out.control(FrameKind::Hello, 0, &hello.encode());
    }

    /// Waits for KEY_REPLY; with it the master proved it holds our key, and the HELLO goes
    /// out sealed.
    pub(super) fn key_exchange(&mut self, applied: u64) -> Result<bool, Fault> {
        let State::KeyExchange(c, _) = &mut self.state else { return Ok(false) };
        c.flush(|_| None)?;
        let Some((kind, payload)) = first_frame(c)? else { return Ok(false) };
        match kind {
            FrameKind::KeyReply => {
                let State::KeyExchange(mut c, init) = std::mem::replace(&mut self.state, State::Dormant) else {
                    unreachable!("state checked above")
                };
                let t = init
                    .finish(&payload)
                    .map_err(|e| Fault::Auth(format!("the master's reply: {e} (another key?)")))?;
                c.seal(t)?;
                self.send_hello(&mut c, applied);
                self.state = State::Handshake(c);
                Ok(true)
            }
            k => Err(Fault::Violation(format!("expected the key handshake reply, got {k:?}"))),
        }
    }

    pub(super) fn handshake<A: App>(&mut self, app: &mut AppPath<A>) -> Result<bool, Fault> {
        let State::Handshake(c) = &mut self.state else { return Ok(false) };
        c.flush(|_| None)?;
        let Some((kind, payload)) = first_frame(c)? else { return Ok(false) };
        let w = match kind {
            FrameKind::Welcome => Hello::decode(&payload).map_err(|e| Fault::Malformed(e.to_string()))?,
            k => return Err(Fault::Violation(format!("expected a handshake, got {k:?}"))),
        };
        let refusal = match w.check_welcome(self.cfg.max_version) {
            Err(e) => Some(Fault::Refused(e.to_string())),
            Ok(()) if w.peer_session != self.session => {
                Some(Fault::Violation("handshake answers another session".into()))
            }
            Ok(()) if w.flags & FLAG_RESUME != 0 && (self.master_session != w.session || w.seq != app.applied()) => {
                Some(Fault::Violation(format!("resumes after sequence {} of another session or point", w.seq)))
            }
            // Nothing can follow the last sequence number: a stream that starts there is none.
            Ok(()) if w.seq == u64::MAX => {
                Some(Fault::Violation("the stream would continue after the last sequence number".into()))
            }
            Ok(()) => None,
        };
        if let Some(f) = refusal {
            c.out.refuse(0, &f.to_string());
            let _ = c.flush(|_| None);
            return Err(f);
        }
        let State::Handshake(mut c) = std::mem::replace(&mut self.state, State::Dormant) else {
            unreachable!("state checked above")
        };
        c.keepalive = Duration::from_millis(u64::from(w.keepalive_ms.max(1000))).min(self.cfg.keepalive);
        c.set_version(w.version);
        if w.flags & FLAG_RESUME == 0 {
            self.walked = None;
        }
        self.master_session = w.session;
        self.parsed = w.seq;
        self.welcomed_at = w.seq;
        app.set_applied(w.seq);
        self.last_acked = w.seq;
        self.backoff = BACKOFF_MIN;
        let more_buffered = c.buffered() > 0;
        let sealed = c.is_sealed();
        self.state = State::Up(c);
        let _ = self.outage.clear();
        app.log(&format!(
            "junos-sync backup: connected to master {} (protocol version {}){}{}",
            addr::show(self.cfg.sock_addr(self.host_at)),
            w.version,
            if w.flags & FLAG_RESUME != 0 { ", resuming" } else { "" },
            if sealed { ", authenticated and encrypted" } else { "" }
        ));
        app.conn_status(true);
        Ok(more_buffered)
    }
}

/// The first frame of a handshake stage, read a frame at a time between reads; a REFUSE is
/// the master's word on why it will not talk to us.
fn first_frame(c: &mut Conn) -> Result<Option<(FrameKind, Vec<u8>)>, Fault> {
    loop {
        if let Some(f) = c.next_frame()? {
            let payload = c.payload(&f).to_vec();
            if f.header.kind == FrameKind::Refuse {
                let why = format!("master refused us: {}", String::from_utf8_lossy(&payload));
                return Err(if f.header.aux == REFUSE_AUTH { Fault::Auth(why) } else { Fault::PeerRefused(why) });
            }
            return Ok(Some((f.header.kind, payload)));
        }
        if !c.read_some()? {
            return Ok(None);
        }
    }
}
