//! The state vocabulary every kind of row shares.

/// Where a row stands in its sync, for every kind of row (the `state`
/// column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RowState {
    /// Due at `next_attempt_at` (more work to do).
    Pending,
    /// Claimed by a worker under a lease (set only by a claim).
    InFlight,
    /// Due again after a delay.
    Retrying,
    /// What the platform wants is what Graph holds.
    Synced,
    /// Parked until the platform's data changes or `regsync retry`.
    Failed,
}

impl RowState {
    /// Every state, in the order a row moves through them.
    pub const ALL: [Self; 5] = [Self::Pending, Self::InFlight, Self::Retrying, Self::Synced, Self::Failed];

    /// The value the `state` column holds.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::InFlight => "in_flight",
            Self::Retrying => "retrying",
            Self::Synced => "synced",
            Self::Failed => "failed",
        }
    }

    /// The state stored as `text`, if it is one.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether nothing is due for the row (synced or failed).
    pub fn is_settled(self) -> bool {
        matches!(self, Self::Synced | Self::Failed)
    }
}
