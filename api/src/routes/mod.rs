//! HTTP routes, one module per resource; handlers are thin and delegate to the store.

pub mod health;
pub mod incidents;
pub mod reports;
