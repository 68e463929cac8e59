//! What the crate's own tests share.

use std::sync::Arc;

use crate::state::{AppState, RequestLog};

/// The bundled repository (`examples/models`), served with the request log off.
pub fn examples_state() -> Arc<AppState> {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models");
    let found = ferroserve_runtime::scan_repository(&repo, &Default::default()).unwrap();
    let runtime = ferroserve_runtime::Runtime::start(found, &Default::default());
    let mut st = AppState::new(Arc::new(runtime));
    st.request_log = RequestLog::Off;
    Arc::new(st)
}
