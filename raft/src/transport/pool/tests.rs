use super::{DIAL_HOLDOFF, DIAL_TIMEOUT};

#[test]
fn a_dial_gives_up_long_before_the_idle_timeout_and_the_holdoff_is_short() {
    // A restarted member must be dialled again within about an election,
    // and a refusing one not in a tight loop.
    assert!(DIAL_TIMEOUT < crate::transport::tls::IDLE_TIMEOUT / 2);
    assert!(DIAL_HOLDOFF < DIAL_TIMEOUT);
}
