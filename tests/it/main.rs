//! Integration tests: real PostgreSQL, real HTTP on loopback, the simulator
//! as Graph, identity platform and event platform.

mod attendance;
mod budget;
mod chaos;
mod chaos_webinar;
mod cli;
mod commands;
#[cfg(feature = "failpoints")]
mod crash;
#[cfg(feature = "failpoints")]
mod crash_successor;
mod credentials;
mod daemon;
mod dashboard;
mod delegated;
#[cfg(feature = "demo")]
mod demo;
mod doctor;
mod failover;
mod faults;
mod helpers;
mod hooks;
mod incremental;
mod lifecycle;
mod link_chaos;
mod links;
mod listing;
mod network;
mod nightly;
mod notifications;
mod operations;
mod paging;
mod partition;
mod priority;
mod profiles;
mod protocol;
mod refresh;
mod registrant_drift;
mod registrants;
mod registrants_follow;
mod reliability;
mod resolution;
mod retired;
mod scope;
mod suspension;
mod teams_changes;
mod tenant;
mod tls;
mod townhalls;
