//! The JSON views the admin API and the status page share: built from the
//! running state, never mutating it. Handlers import views; views import no
//! handler.

pub mod plugins;
pub mod state;
