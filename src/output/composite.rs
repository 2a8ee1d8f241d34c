//! Fan-out to several targets: each event goes to every target concurrently,
//! and a position is durable only once it is durable in all of them.

use async_trait::async_trait;
use futures_util::future::try_join_all;

use super::{Event, OutputError, OutputTarget};
use crate::lsn::Lsn;

/// Every configured target behind one [`OutputTarget`].
#[derive(Default)]
pub struct CompositeOutput {
    targets: Vec<Box<dyn OutputTarget>>,
}

impl CompositeOutput {
    pub fn new() -> Self {
        CompositeOutput::default()
    }

    /// Add a target; events go to targets in the order they were added.
    pub fn push(&mut self, target: Box<dyn OutputTarget>) {
        self.targets.push(target);
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }
}

#[async_trait]
impl OutputTarget for CompositeOutput {
    fn name(&self) -> &'static str {
        "composite"
    }

    async fn write(&mut self, event: Event<'_>) -> Result<(), OutputError> {
        if let [only] = self.targets.as_mut_slice() {
            return only.write(event).await;
        }
        try_join_all(self.targets.iter_mut().map(|t| t.write(event))).await?;
        Ok(())
    }

    async fn commit(&mut self, end: Lsn) -> Result<(), OutputError> {
        try_join_all(self.targets.iter_mut().map(|t| t.commit(end))).await?;
        Ok(())
    }

    fn durable(&self) -> Lsn {
        self.targets
            .iter()
            .map(|t| t.durable())
            .min()
            .unwrap_or(Lsn::ZERO)
    }

    fn discard_uncommitted(&mut self) {
        for target in &mut self.targets {
            target.discard_uncommitted();
        }
    }

    async fn close(&mut self) -> Result<(), OutputError> {
        try_join_all(self.targets.iter_mut().map(|t| t.close())).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Records what it is given; durable only up to what the test allows.
    struct Recorder {
        seen: Arc<Mutex<Vec<String>>>,
        committed: Lsn,
        durable_limit: Lsn,
    }

    #[async_trait]
    impl OutputTarget for Recorder {
        fn name(&self) -> &'static str {
            "recorder"
        }
        async fn write(&mut self, event: Event<'_>) -> Result<(), OutputError> {
            let line = String::from_utf8_lossy(event.json).into_owned();
            self.seen.lock().unwrap().push(line);
            Ok(())
        }
        async fn commit(&mut self, end: Lsn) -> Result<(), OutputError> {
            self.committed = end;
            Ok(())
        }
        fn durable(&self) -> Lsn {
            self.committed.min(self.durable_limit)
        }
        async fn close(&mut self) -> Result<(), OutputError> {
            Ok(())
        }
    }

    fn recorder(limit: u64) -> (Box<Recorder>, Arc<Mutex<Vec<String>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let r = Recorder {
            seen: seen.clone(),
            committed: Lsn::ZERO,
            durable_limit: Lsn(limit),
        };
        (Box::new(r), seen)
    }

    #[tokio::test]
    async fn every_target_sees_every_event_and_durable_is_the_minimum() {
        let (a, seen_a) = recorder(u64::MAX);
        let (b, seen_b) = recorder(0x150);
        let mut out = CompositeOutput::new();
        out.push(a);
        out.push(b);
        let change = crate::change::Change::Begin(crate::change::TxInfo {
            xid: 1,
            commit_lsn: Lsn(1),
            commit_ts: 0,
        });
        for payload in [b"one".as_slice(), b"two"] {
            out.write(Event {
                change: &change,
                json: payload,
                seq: Default::default(),
            })
            .await
            .unwrap();
        }
        out.commit(Lsn(0x200)).await.unwrap();
        assert_eq!(*seen_a.lock().unwrap(), ["one", "two"]);
        assert_eq!(*seen_b.lock().unwrap(), ["one", "two"]);
        assert_eq!(
            out.durable(),
            Lsn(0x150),
            "the slower target holds the position"
        );
    }

    #[test]
    fn an_empty_composite_has_nothing_durable() {
        assert_eq!(CompositeOutput::new().durable(), Lsn::ZERO);
    }
}
