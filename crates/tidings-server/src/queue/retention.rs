//! Retention: a periodic pass trims every topic by age, count and bytes; the unsettled
//! entries it removes become gaps, counted per subscription and announced with `tidings:gap`.

use std::sync::Arc;

use tidings_core::clock::{millis, now_millis};
use tidings_core::store::StoreError;

use super::Queues;

/// Enforces retention on every topic, periodically, and announces the gaps.
pub(super) async fn retention_task(queues: Arc<Queues>) {
    let mut tick = tokio::time::interval(queues.config.retention_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = queues.stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = enforce_retention(&queues).await {
            tracing::warn!(error = %e, "retention pass failed; will retry");
        }
    }
}

/// One retention pass over every topic.
pub async fn enforce_retention(queues: &Queues) -> Result<usize, StoreError> {
    let dedup = millis(queues.config.dedup_window);
    let mut lost = 0;
    for topic in queues.store.topics().await? {
        let retention = queues.config.retention_for(&topic);
        let gaps = queues
            .store
            .enforce_retention(&topic, retention, now_millis(), dedup)
            .await?;
        for gap in &gaps {
            lost += 1;
            tracing::warn!(
                topic = %gap.topic, subscription = %gap.subscription, from = gap.from, to = gap.to,
                "retention removed unsettled messages"
            );
            queues.announce_gap(gap);
        }
    }
    Ok(lost)
}
