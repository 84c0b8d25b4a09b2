//! `tailrace`: the log shipper. This is a placeholder until the shipper issue lands; for now it
//! only proves the workspace wiring by logging through `tailrace-log`.

fn main() {
    let _guard = tailrace_log::init("tailrace");
    tracing::info!("tailrace shipper is not implemented yet");
}
