//! What the HTTP front derives from one snapshot of the model set ([`Views`]): the friendly
//! tables and the route-alias lookup table ([`Friendly`]), the OpenAPI document and Swagger
//! UI ([`Docs`]). The routes themselves never change: the friendly and alias routes look their
//! model up here on each request, so a model loaded, replaced or unloaded is answered, listed
//! and documented from the request after the swap on, never from a mix.
//!
//! The views of a snapshot are built once, by the first request that needs them after the
//! model set changed (the OpenAPI document only when it is asked for), and shared by every
//! request on that snapshot.

use std::sync::{Arc, Mutex, OnceLock, RwLock};

use ferroserve_runtime::Runtime;

use crate::docs::Docs;
use crate::friendly::Friendly;
use crate::state::AppState;

/// The views of one snapshot of the model set.
pub struct Views {
    /// The snapshot they were built from: a request that uses the views uses this one.
    pub runtime: Arc<Runtime>,
    pub friendly: Arc<Friendly>,
    /// API keys are required: the document says how to send one.
    secured: bool,
    docs: OnceLock<Arc<Docs>>,
}

impl Views {
    fn build(st: &AppState, runtime: Arc<Runtime>) -> Views {
        let friendly = Arc::new(Friendly::build(st, &runtime));
        Views {
            runtime,
            friendly,
            secured: st.auth.as_ref().is_some_and(|a| a.is_on()),
            docs: OnceLock::new(),
        }
    }

    /// The OpenAPI document and Swagger UI of this snapshot (built on first use).
    pub fn docs(&self) -> Arc<Docs> {
        self.docs
            .get_or_init(|| {
                Arc::new(Docs::new(&crate::openapi::document(
                    &self.runtime,
                    &self.friendly,
                    self.secured,
                )))
            })
            .clone()
    }
}

/// The views of the current snapshot, rebuilt when the snapshot changes.
#[derive(Default)]
pub struct ViewCache {
    current: RwLock<Option<Arc<Views>>>,
    /// One build at a time: requests arriving during a build wait for it, not build again.
    building: Mutex<()>,
}

impl ViewCache {
    /// The views of `st`'s current snapshot.
    pub fn get(&self, st: &AppState) -> Arc<Views> {
        let runtime = st.runtime();
        let fresh = |v: &Option<Arc<Views>>| {
            v.as_ref()
                .filter(|v| Arc::ptr_eq(&v.runtime, &runtime))
                .cloned()
        };
        if let Some(v) = fresh(&self.current.read().unwrap_or_else(|e| e.into_inner())) {
            return v;
        }
        let _one = self.building.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = fresh(&self.current.read().unwrap_or_else(|e| e.into_inner())) {
            return v;
        }
        let v = Arc::new(Views::build(st, runtime));
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(v.clone());
        v
    }
}
