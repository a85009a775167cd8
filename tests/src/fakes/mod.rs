//! Local fake servers for the paths real peers do not cover.

pub mod graph;
pub mod securityhub;
