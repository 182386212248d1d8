//! The server's side of the recorder: answers matched, in order, to what the client sent;
//! errors and the skip to Sync; the end of the connection.

use super::*;

/// Longest command tag kept (one tag; a simple query joins several up to [`MAX_TAGS`]).
const MAX_TAG: usize = 256;
const MAX_TAGS: usize = 4096;

fn show(name: &[u8]) -> String {
    cap(lossy(name), 64)
}

impl Run {
    fn add_tag(&mut self, tag: &[u8], rows: Option<u64>) {
        if self.tags.len() < MAX_TAGS {
            if !self.tags.is_empty() {
                self.tags.push_str("; ");
            }
            self.tags.push_str(&cap(lossy(tag), MAX_TAG));
        } else if !self.tags.ends_with("; …") {
            self.tags.push_str("; …");
        }
        if let Some(n) = rows {
            self.rows = Some(self.rows.unwrap_or(0).saturating_add(n));
        }
    }
}

impl Recorder {
    /// Feeds one server message, in the order the server sent it. `Err(OutOfStep)` means the
    /// message answers nothing the recorder was waiting for (it is then ignored): worth logging,
    /// as the records may be off from there on. `TooManyStatements`/`TooManyPortals` mean a
    /// statement or portal could not be remembered: close the connection.
    pub fn backend(&mut self, msg: &BackendMessage<'_>, now_ms: u64) -> Result<(), RecorderError> {
        use BackendMessage as B;
        self.settle_head();
        match msg {
            B::ParameterStatus { name, value } => {
                if *name == b"standard_conforming_strings" {
                    self.standard_conforming_strings = *value != b"off";
                }
                Ok(())
            }
            B::Authentication(_)
            | B::BackendKeyData { .. }
            | B::NoticeResponse(_)
            | B::NotificationResponse { .. }
            | B::NegotiateProtocolVersion { .. }
            | B::CopyDone => Ok(()),
            B::ParseComplete => match self.pending.pop_front() {
                Some(Pending::Parse { name, prepared, .. }) => self.apply_parse(name, prepared),
                other => self.out_of_step(other, "ParseComplete"),
            },
            B::BindComplete => match self.pending.pop_front() {
                Some(Pending::Bind {
                    portal,
                    statement,
                    params,
                    params_redacted,
                    ..
                }) => {
                    let p = self.make_portal(&statement, params, params_redacted, None);
                    self.apply_bind(portal, p)
                }
                other => self.out_of_step(other, "BindComplete"),
            },
            B::CloseComplete => match self.pending.pop_front() {
                Some(Pending::Close { kind, name, .. }) => {
                    match kind {
                        TargetKind::Statement => self.statements.remove(&name).map(|_| ()),
                        TargetKind::Portal => self.portals.remove(&name).map(|_| ()),
                    };
                    Ok(())
                }
                other => self.out_of_step(other, "CloseComplete"),
            },
            B::ParameterDescription(_) => match self.pending.front() {
                Some(Pending::Describe {
                    kind: TargetKind::Statement,
                    ..
                }) => Ok(()),
                _ => Err(RecorderError::OutOfStep {
                    got: "ParameterDescription",
                }),
            },
            B::NoData | B::RowDescription(_) => match self.pending.front() {
                Some(Pending::Describe { .. }) => {
                    self.pending.pop_front();
                    Ok(())
                }
                Some(Pending::Execute(_) | Pending::Query(_))
                    if matches!(msg, B::RowDescription(_)) =>
                {
                    Ok(())
                }
                _ => Err(RecorderError::OutOfStep {
                    got: if matches!(msg, B::NoData) {
                        "NoData"
                    } else {
                        "RowDescription"
                    },
                }),
            },
            B::DataRow(_) => match self.head_run() {
                Some(r) => {
                    r.data_rows = r.data_rows.saturating_add(1);
                    Ok(())
                }
                None => Err(RecorderError::OutOfStep { got: "DataRow" }),
            },
            B::CopyData(d) => match self.head_run() {
                Some(r) => {
                    r.copy_bytes = r.copy_bytes.saturating_add(d.len() as u64);
                    Ok(())
                }
                None => Err(RecorderError::OutOfStep { got: "CopyData" }),
            },
            B::CopyInResponse(_) => match self.head_run() {
                Some(r) => {
                    r.copy_in = true;
                    self.enter_copy_in();
                    Ok(())
                }
                None => Err(RecorderError::OutOfStep {
                    got: "CopyInResponse",
                }),
            },
            B::CopyOutResponse(_) | B::CopyBothResponse(_) => match self.head_run() {
                Some(_) => Ok(()),
                None => Err(RecorderError::OutOfStep {
                    got: "CopyOutResponse",
                }),
            },
            B::CommandComplete(c) => match self.pending.front_mut() {
                Some(Pending::Query(r)) => {
                    r.add_tag(c.tag, c.rows());
                    Ok(())
                }
                Some(Pending::Execute(_)) => {
                    let outcome = Outcome::Ok {
                        tag: cap(lossy(c.tag), MAX_TAG),
                        rows: c.rows(),
                    };
                    self.finish_head(outcome, now_ms);
                    Ok(())
                }
                _ => Err(RecorderError::OutOfStep {
                    got: "CommandComplete",
                }),
            },
            B::EmptyQueryResponse => match self.pending.front() {
                Some(Pending::Query(_)) => Ok(()),
                Some(Pending::Execute(_)) => {
                    let outcome = Outcome::Ok {
                        tag: String::new(),
                        rows: None,
                    };
                    self.finish_head(outcome, now_ms);
                    Ok(())
                }
                _ => Err(RecorderError::OutOfStep {
                    got: "EmptyQueryResponse",
                }),
            },
            B::PortalSuspended => match self.pending.front() {
                Some(Pending::Execute(r)) => {
                    let outcome = Outcome::Suspended { rows: r.data_rows };
                    self.finish_head(outcome, now_ms);
                    Ok(())
                }
                _ => Err(RecorderError::OutOfStep {
                    got: "PortalSuspended",
                }),
            },
            B::FunctionCallResponse(_) => match self.pending.front() {
                Some(Pending::FunctionCall(_)) => Ok(()),
                _ => Err(RecorderError::OutOfStep {
                    got: "FunctionCallResponse",
                }),
            },
            B::ErrorResponse(f) => {
                self.on_error(f, now_ms);
                Ok(())
            }
            B::ReadyForQuery(status) => {
                let result = match self.pending.pop_front() {
                    Some(Pending::Query(mut run)) => {
                        let outcome = match run.error.take() {
                            Some((sqlstate, message)) => Outcome::Error { sqlstate, message },
                            None => Outcome::Ok {
                                tag: std::mem::take(&mut run.tags),
                                rows: run.rows,
                            },
                        };
                        // A simple Query replaces the unnamed statement and portal.
                        self.statements.remove(b"".as_slice());
                        self.portals.remove(b"".as_slice());
                        self.finish_run(run, outcome, now_ms);
                        Ok(())
                    }
                    Some(Pending::FunctionCall(mut run)) => {
                        let outcome = match run.error.take() {
                            Some((sqlstate, message)) => Outcome::Error { sqlstate, message },
                            None => Outcome::Ok {
                                tag: String::new(),
                                rows: None,
                            },
                        };
                        self.finish_run(run, outcome, now_ms);
                        Ok(())
                    }
                    Some(Pending::Sync { .. }) | None => Ok(()),
                    other => self.out_of_step(other, "ReadyForQuery"),
                };
                if *status == TransactionStatus::Idle {
                    // The transaction ended: so did every portal.
                    self.portals.clear();
                }
                result
            }
        }
    }

    /// Records everything still unanswered as [`Outcome::Interrupted`] (or the error it had)
    /// and returns every record not yet taken. Call when either side closes.
    pub fn finish(mut self, now_ms: u64) -> Vec<StatementRecord> {
        self.settle_head();
        let mut skip = self.skipping.take().unwrap_or_default();
        while let Some(item) = self.pending.pop_front() {
            self.skip_item(item, &mut skip, Outcome::Interrupted, now_ms);
        }
        self.end_skip(skip, now_ms);
        std::mem::take(&mut self.records)
    }

    fn out_of_step(
        &mut self,
        taken: Option<Pending>,
        got: &'static str,
    ) -> Result<(), RecorderError> {
        if let Some(p) = taken {
            self.pending.push_front(p);
        }
        Err(RecorderError::OutOfStep { got })
    }

    /// Drops CopyEnd markers at the head; resolves an Execute reaching the head (everything
    /// before it has been answered, so the state is the server's).
    fn settle_head(&mut self) {
        while matches!(self.pending.front(), Some(Pending::CopyEnd)) {
            self.pending.pop_front();
        }
        let portal = match self.pending.front() {
            Some(Pending::Execute(run)) if run.resolved.is_none() => run.portal.clone(),
            _ => return,
        };
        let resolved = self.resolve(&portal, None);
        if let Some(Pending::Execute(run)) = self.pending.front_mut() {
            run.resolved = Some(resolved);
        }
    }

    fn head_run(&mut self) -> Option<&mut Run> {
        match self.pending.front_mut() {
            Some(Pending::Execute(r) | Pending::Query(r)) => Some(r),
            _ => None,
        }
    }

    fn finish_head(&mut self, outcome: Outcome, now_ms: u64) {
        if let Some(Pending::Execute(run) | Pending::Query(run) | Pending::FunctionCall(run)) =
            self.pending.pop_front()
        {
            self.finish_run(run, outcome, now_ms);
        }
    }

    /// The server began reading COPY data: the Syncs the client sent since, up to its
    /// CopyDone/CopyFail, are ignored by the server.
    fn enter_copy_in(&mut self) {
        let mut i = 1;
        while let Some(p) = self.pending.get(i) {
            match p {
                Pending::Sync { .. } => {
                    self.pending.remove(i);
                }
                Pending::CopyEnd => {
                    self.pending.remove(i);
                    return;
                }
                _ => i += 1,
            }
        }
        self.copy_in_open = true;
    }

    fn apply_parse(&mut self, name: Vec<u8>, prepared: Arc<Prepared>) -> Result<(), RecorderError> {
        if !name.is_empty()
            && !self.statements.contains_key(&name)
            && count_named(&self.statements) >= self.limits.max_statements
        {
            return Err(RecorderError::TooManyStatements {
                limit: self.limits.max_statements,
            });
        }
        self.statements.insert(
            name,
            Stmt {
                prepared,
                stale: false,
            },
        );
        Ok(())
    }

    fn apply_bind(&mut self, name: Vec<u8>, portal: Portal) -> Result<(), RecorderError> {
        if !name.is_empty()
            && !self.portals.contains_key(&name)
            && count_named(&self.portals) >= self.limits.max_portals
        {
            return Err(RecorderError::TooManyPortals {
                limit: self.limits.max_portals,
            });
        }
        self.portals.insert(name, portal);
        Ok(())
    }

    /// The portal a Bind makes: the statement's text (from the skip overlay first when given)
    /// and the parameters, redacted where the text puts a parameter in a password position.
    fn make_portal(
        &self,
        statement: &[u8],
        mut params: Vec<Option<String>>,
        mut params_redacted: bool,
        skip: Option<&Skip>,
    ) -> Portal {
        let stmt = match skip.and_then(|s| s.statements.get(statement)) {
            Some(overlaid) => overlaid.clone(),
            None => self.statements.get(statement).cloned(),
        };
        match stmt {
            Some(s) => {
                for &i in &s.prepared.secret_params {
                    if let Some(slot @ Some(_)) = params.get_mut(i) {
                        *slot = Some(MASK.to_owned());
                        params_redacted = true;
                    }
                }
                Portal {
                    prepared: s.prepared,
                    params: Arc::new(params),
                    params_redacted,
                    caveat: s.stale.then_some(Caveat::MayBeOutdated),
                }
            }
            None => Portal {
                prepared: placeholder(format!(
                    "[statement \"{}\" was not prepared on this connection: SQL PREPARE, or over \
                     the statement limit]",
                    show(statement)
                )),
                params: Arc::new(params),
                params_redacted,
                caveat: Some(Caveat::UnknownStatement),
            },
        }
    }

    fn resolve(&self, portal: &[u8], skip: Option<&Skip>) -> Portal {
        let found = match skip.and_then(|s| s.portals.get(portal)) {
            Some(overlaid) => overlaid.clone(),
            None => self.portals.get(portal).cloned(),
        };
        found.unwrap_or_else(|| Portal {
            prepared: placeholder(format!(
                "[portal \"{}\" was not bound on this connection: a SQL cursor, or over the \
                 portal limit]",
                show(portal)
            )),
            params: Arc::default(),
            params_redacted: false,
            caveat: Some(Caveat::UnknownPortal),
        })
    }

    fn finish_run(&mut self, run: Run, outcome: Outcome, now_ms: u64) {
        let resolved = match run.resolved {
            Some(r) => r,
            None => self.resolve(&run.portal, None),
        };
        if outcome != Outcome::Skipped && resolved.prepared.touches_session {
            self.statements.values_mut().for_each(|s| s.stale = true);
            for p in self.portals.values_mut() {
                p.caveat = p.caveat.or(Some(Caveat::MayBeOutdated));
            }
        }
        if run.copy_in {
            self.copy_in_open = false;
        }
        self.records.push(StatementRecord {
            protocol: run.protocol,
            text: resolved.prepared.text.clone(),
            params: resolved.params.as_ref().clone(),
            outcome,
            started_at: run.started_at,
            ended_at: now_ms,
            data_rows: run.data_rows,
            copy_bytes: run.copy_bytes,
            redacted: resolved.prepared.redacted || resolved.params_redacted,
            caveat: resolved.caveat,
        });
    }

    fn on_error(&mut self, f: &Fields<'_>, now_ms: u64) {
        let (sqlstate, message) = error_info(f, self.limits.max_text);
        match self.pending.front_mut() {
            // Asynchronous (e.g. a FATAL while idle): nothing was waiting.
            None | Some(Pending::CopyEnd) => {}
            Some(Pending::Query(r) | Pending::FunctionCall(r)) => {
                r.error.get_or_insert((sqlstate, message));
            }
            Some(Pending::Sync { at }) => {
                let at = *at;
                self.records.push(step_record(
                    placeholder("[error at Sync: the implicit COMMIT of the pipeline]".into()),
                    Vec::new(),
                    false,
                    at,
                    now_ms,
                    (sqlstate, message),
                ));
            }
            Some(_) => {
                let Some(item) = self.pending.pop_front() else {
                    return;
                };
                let mut skip = Skip::default();
                match item {
                    Pending::Execute(run) => {
                        self.finish_run(run, Outcome::Error { sqlstate, message }, now_ms);
                    }
                    failed => {
                        let record =
                            self.failed_step(&failed, now_ms, (sqlstate.clone(), message.clone()));
                        self.skip_item(failed, &mut skip, Outcome::Skipped, now_ms);
                        skip.failed = Some((record, (sqlstate, message)));
                    }
                }
                // Up to the next Sync the server skips everything.
                loop {
                    match self.pending.front() {
                        Some(Pending::Sync { .. }) => {
                            self.end_skip(skip, now_ms);
                            return;
                        }
                        None => {
                            self.skipping = Some(skip);
                            return;
                        }
                        Some(_) => {
                            if let Some(item) = self.pending.pop_front() {
                                self.skip_item(item, &mut skip, Outcome::Skipped, now_ms);
                            }
                        }
                    }
                }
            }
        }
    }

    /// The record of a Parse, Bind, Describe or Close the server refused.
    fn failed_step(&self, item: &Pending, now_ms: u64, error: (String, String)) -> StatementRecord {
        match item {
            Pending::Parse { prepared, at, .. } => {
                step_record(prepared.clone(), Vec::new(), false, *at, now_ms, error)
            }
            Pending::Bind {
                statement,
                params,
                params_redacted,
                at,
                ..
            } => {
                let p = self.make_portal(statement, params.clone(), *params_redacted, None);
                let params = p.params.as_ref().clone();
                step_record(p.prepared, params, p.params_redacted, *at, now_ms, error)
            }
            Pending::Describe { kind, name, at } | Pending::Close { kind, name, at } => {
                let what = if matches!(item, Pending::Describe { .. }) {
                    "Describe"
                } else {
                    "Close"
                };
                let target = match kind {
                    TargetKind::Statement => "statement",
                    TargetKind::Portal => "portal",
                };
                let text = format!("[{what} {target} \"{}\"]", show(name));
                step_record(placeholder(text), Vec::new(), false, *at, now_ms, error)
            }
            _ => step_record(
                placeholder(String::new()),
                Vec::new(),
                false,
                now_ms,
                now_ms,
                error,
            ),
        }
    }

    /// A message the server skips (or never answered): its effect goes to the overlay, a
    /// statement becomes a record with `unanswered` (or the pending failed step's error).
    pub(super) fn skip_item(
        &mut self,
        item: Pending,
        skip: &mut Skip,
        unanswered: Outcome,
        now_ms: u64,
    ) {
        match item {
            Pending::Parse { name, prepared, .. } => {
                let stmt = Stmt {
                    prepared,
                    stale: false,
                };
                skip.statements.insert(name, Some(stmt));
            }
            Pending::Bind {
                portal,
                statement,
                params,
                params_redacted,
                ..
            } => {
                let p = self.make_portal(&statement, params, params_redacted, Some(skip));
                skip.portals.insert(portal, Some(p));
            }
            Pending::Close { kind, name, .. } => match kind {
                TargetKind::Statement => {
                    skip.statements.insert(name, None);
                }
                TargetKind::Portal => {
                    skip.portals.insert(name, None);
                }
            },
            Pending::Describe { .. } | Pending::CopyEnd => {}
            Pending::Sync { .. } => {
                if let Some((record, _)) = skip.failed.take() {
                    self.records.push(record);
                }
            }
            Pending::Execute(mut run) => {
                if run.resolved.is_none() {
                    run.resolved = Some(self.resolve(&run.portal, Some(skip)));
                }
                let outcome = match skip.failed.take() {
                    Some((_, (sqlstate, message))) => Outcome::Error { sqlstate, message },
                    None => unanswered,
                };
                self.finish_run(run, outcome, now_ms);
            }
            Pending::Query(mut run) | Pending::FunctionCall(mut run) => {
                let outcome = match run.error.take() {
                    Some((sqlstate, message)) => Outcome::Error { sqlstate, message },
                    None => unanswered,
                };
                self.finish_run(run, outcome, now_ms);
            }
        }
    }

    /// The Sync ends the skip: a failed step no Execute carried becomes a record of its own.
    pub(super) fn end_skip(&mut self, skip: Skip, _now_ms: u64) {
        if let Some((record, _)) = skip.failed {
            self.records.push(record);
        }
    }
}

fn step_record(
    prepared: Arc<Prepared>,
    params: Vec<Option<String>>,
    params_redacted: bool,
    at: u64,
    now_ms: u64,
    (sqlstate, message): (String, String),
) -> StatementRecord {
    StatementRecord {
        protocol: Protocol::Extended,
        text: prepared.text.clone(),
        params,
        outcome: Outcome::Error { sqlstate, message },
        started_at: at,
        ended_at: now_ms,
        data_rows: 0,
        copy_bytes: 0,
        redacted: prepared.redacted || params_redacted,
        caveat: Some(Caveat::ProtocolStep),
    }
}
